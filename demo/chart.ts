// The live loss / accuracy chart: a canvas drawn by hand, sized to its box and the device pixel ratio.

export interface Point {
  step: number;
  loss: number;
  acc: number | null;
}

const LOSS = "#2563eb";
const ACC = "#d97706";

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function drawChart(canvas: HTMLCanvasElement, points: Point[], maxSteps: number): void {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d")!;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pad = { l: 44, r: 44, t: 12, b: 28 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  const lossMax = niceMax(Math.max(0, ...points.map((p) => p.loss)));
  const xMax = Math.max(1, maxSteps, ...points.map((p) => p.step));
  const x = (s: number) => pad.l + (pw * s) / xMax;
  const yl = (v: number) => pad.t + ph - (ph * v) / lossMax;
  const ya = (v: number) => pad.t + ph - ph * v;

  g.font = "11px system-ui, sans-serif";
  g.lineWidth = 1;
  g.strokeStyle = "#e3e7ec";
  g.fillStyle = "#5b6673";
  g.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (ph * i) / 4;
    g.beginPath();
    g.moveTo(pad.l, y + 0.5);
    g.lineTo(pad.l + pw, y + 0.5);
    g.stroke();
    g.textAlign = "right";
    g.fillStyle = LOSS;
    g.fillText(((lossMax * (4 - i)) / 4).toFixed(lossMax < 2 ? 2 : 1), pad.l - 6, y);
    g.textAlign = "left";
    g.fillStyle = ACC;
    g.fillText(`${(100 - 25 * i).toFixed(0)}%`, pad.l + pw + 6, y);
  }
  g.fillStyle = "#5b6673";
  g.textAlign = "center";
  g.textBaseline = "top";
  const tick = Math.max(1, niceMax(xMax / 5));
  for (let s = 0; s <= xMax + 1e-9; s += tick) g.fillText(String(Math.round(s)), x(s), pad.t + ph + 6);
  if (!points.length) {
    g.textBaseline = "middle";
    g.fillText("loss and token accuracy appear here as training runs", pad.l + pw / 2, pad.t + ph / 2);
    return;
  }
  const line = (color: string, pts: [number, number][]) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.lineJoin = "round";
    g.beginPath();
    pts.forEach(([px, py], i) => (i ? g.lineTo(px, py) : g.moveTo(px, py)));
    g.stroke();
    if (pts.length === 1) {
      g.fillStyle = color;
      g.beginPath();
      g.arc(pts[0]![0], pts[0]![1], 3, 0, 2 * Math.PI);
      g.fill();
    }
  };
  line(ACC, points.filter((p) => p.acc !== null).map((p) => [x(p.step), ya(p.acc!)]));
  line(LOSS, points.map((p) => [x(p.step), yl(p.loss)]));
}
