export * as MetricRecord from "./MetricRecord";
export * as MetricsSink from "./MetricsSink";
export * as TensorBoard from "./TensorBoard";
export * as Throughput from "./Throughput";
export * as ConsoleLine from "./ConsoleLine";
export * as Progress from "./Progress";
export * as Chart from "./Chart";
export * as LossCurve from "./LossCurve";
