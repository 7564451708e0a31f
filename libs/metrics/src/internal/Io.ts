export { fileErrorFrom as fileError } from "@patchlm/core";
