/**
 * Prometheus metrics in the text exposition format (version 0.0.4). Every metric is read when
 * scraped, from counters and sizes the subsystems keep anyway, so nothing on a hot path pays
 * for metrics.
 */

export type MetricType = "counter" | "gauge";
export type Labels = Record<string, string>;
/** One value, or one value per label set. */
export type Sample = number | readonly (readonly [Labels, number])[];

interface Metric {
  name: string;
  help: string;
  type: MetricType;
  read: () => Sample;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => {
    if (!LABEL.test(k)) throw new Error(`invalid metric label name ${JSON.stringify(k)}`);
    return `${k}="${escapeLabelValue(v)}"`;
  });
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

export class MetricsRegistry {
  private readonly metrics: Metric[] = [];

  counter(name: string, help: string, read: () => Sample): this {
    return this.add({ name, help, type: "counter", read });
  }

  gauge(name: string, help: string, read: () => Sample): this {
    return this.add({ name, help, type: "gauge", read });
  }

  private add(metric: Metric): this {
    if (!NAME.test(metric.name)) throw new Error(`invalid metric name ${metric.name}`);
    if (this.metrics.some((m) => m.name === metric.name)) {
      throw new Error(`metric ${metric.name} registered twice`);
    }
    this.metrics.push(metric);
    return this;
  }

  /** The exposition text. A metric whose reader throws is left out, not the whole scrape. */
  render(): string {
    const out: string[] = [];
    for (const m of this.metrics) {
      let sample: Sample;
      try {
        sample = m.read();
      } catch {
        continue;
      }
      out.push(`# HELP ${m.name} ${m.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
      out.push(`# TYPE ${m.name} ${m.type}`);
      if (typeof sample === "number") {
        out.push(`${m.name} ${formatValue(sample)}`);
      } else {
        for (const [labels, v] of sample) {
          out.push(`${m.name}${formatLabels(labels)} ${formatValue(v)}`);
        }
      }
    }
    return out.join("\n") + "\n";
  }
}

/** Content type of {@link MetricsRegistry.render}'s output. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
