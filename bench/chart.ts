// A small SVG bar chart of latency percentiles per mode (no dependencies).
export interface ChartSeries {
  readonly name: string;
  readonly values: readonly number[];
}

const COLORS = ['#7f8c8d', '#2e86de', '#e67e22', '#27ae60'];

export function latencyChart(title: string, labels: readonly string[], series: readonly ChartSeries[]): string {
  const width = 760;
  const height = 360;
  const left = 60;
  const bottom = 300;
  const top = 50;
  const max = Math.max(...series.flatMap((s) => s.values.filter(Number.isFinite)), 0.001) * 1.1;
  const groupWidth = (width - left - 20) / labels.length;
  const barWidth = (groupWidth - 20) / series.length;
  const y = (v: number): number => bottom - ((bottom - top) * v) / max;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${title}</text>`,
    `<line x1="${left}" y1="${bottom}" x2="${width - 10}" y2="${bottom}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    out.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`, `<line x1="${left}" y1="${y(v)}" x2="${width - 10}" y2="${y(v)}" stroke="#eee"/>`);
  }
  out.push(`<text x="14" y="${(top + bottom) / 2}" transform="rotate(-90 14 ${(top + bottom) / 2})" text-anchor="middle">ms</text>`);
  labels.forEach((label, g) => {
    const x0 = left + 10 + g * groupWidth;
    series.forEach((s, i) => {
      const v = s.values[g] ?? 0;
      const x = x0 + i * barWidth;
      out.push(`<rect x="${x}" y="${y(v)}" width="${barWidth - 2}" height="${bottom - y(v)}" fill="${COLORS[i % COLORS.length] ?? '#000'}"><title>${s.name} ${label}: ${v.toFixed(3)} ms</title></rect>`);
    });
    out.push(`<text x="${x0 + (groupWidth - 20) / 2}" y="${bottom + 18}" text-anchor="middle">${label}</text>`);
  });
  series.forEach((s, i) => {
    out.push(`<rect x="${left + 10 + i * 170}" y="${bottom + 34}" width="12" height="12" fill="${COLORS[i % COLORS.length] ?? '#000'}"/>`, `<text x="${left + 28 + i * 170}" y="${bottom + 44}">${s.name}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
