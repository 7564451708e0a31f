import { fusedSuite } from "./fusedSuite";

fusedSuite("cpu");
