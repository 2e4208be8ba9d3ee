// Plots drawn by the page itself, as SVG built with DOM calls (no library,
// no CDN): a sparkline of events per second and bars of runs finished per
// minute over the last 15 minutes, both fed from /ws, and each phase's
// duration distribution from /api/summary's cumulative buckets. Each plot
// is redrawn at most once a second (the stream only bumps a counter), so
// 10,000 events per second cost the page no extra layout.

// The SVG namespace: a name, not an address anything is fetched from.
const SVG_NS = 'http://www.w3.org/2000/svg';

export const HISTORY_SECONDS = 15 * 60;

// Counts in fixed time slots, newest last; the current slot is still filling.
export class History {
  constructor(slots, slotMs) {
    this.slotMs = slotMs;
    this.counts = new Array(slots).fill(0);
    this.slot = Math.floor(Date.now() / slotMs);
  }

  add(n) {
    this.counts[this.counts.length - 1] += n;
  }

  // Counts `n` at time `at` (ms since the epoch) in its slot, if that is
  // still shown; a time ahead of this one's (another machine's clock)
  // counts in the current slot. Roll to the present first.
  addAt(at, n) {
    const back = Math.max(0, this.slot - Math.floor(at / this.slotMs));
    if (back < this.counts.length) this.counts[this.counts.length - 1 - back] += n;
  }

  // Moves to the slot of `now`, opening an empty slot for every one passed.
  roll(now) {
    const slot = Math.floor(now / this.slotMs);
    const steps = Math.min(slot - this.slot, this.counts.length);
    for (let i = 0; i < steps; i++) {
      this.counts.shift();
      this.counts.push(0);
    }
    if (slot > this.slot) this.slot = slot;
  }

  // The complete slots, oldest first.
  complete() {
    return this.counts.slice(0, -1);
  }
}

function svgEl(name, attrs) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// An SVG of `width` × `height` user units that scales to its box.
export function makeSvg(width, height, label) {
  const svg = svgEl('svg', {
    viewBox: '0 0 ' + width + ' ' + height,
    preserveAspectRatio: 'none',
    role: 'img',
    'aria-label': label,
  });
  return svg;
}

// Draws `values` as a line with a filled area under it; returns the peak.
export function drawSparkline(svg, values) {
  const [, , width, height] = svg.getAttribute('viewBox').split(' ').map(Number);
  const peak = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  let line = '';
  for (let i = 0; i < values.length; i++) {
    const x = (i * step).toFixed(1);
    const y = (height - 1 - (values[i] / peak) * (height - 2)).toFixed(1);
    line += (i ? ' ' : '') + x + ',' + y;
  }
  let area = svg.querySelector('polygon');
  let polyline = svg.querySelector('polyline');
  if (!polyline) {
    area = svgEl('polygon', { class: 'area' });
    polyline = svgEl('polyline', { class: 'line' });
    svg.append(area, polyline);
  }
  polyline.setAttribute('points', line);
  area.setAttribute('points', '0,' + height + ' ' + line + ' ' + width + ',' + height);
  return Math.max(...values, 0);
}

// Draws `values` as bars, one per value; returns the peak.
export function drawBars(svg, values, className) {
  const [, , width, height] = svg.getAttribute('viewBox').split(' ').map(Number);
  const peak = Math.max(1, ...values);
  const slot = width / Math.max(1, values.length);
  while (svg.childElementCount > values.length) svg.lastChild.remove();
  while (svg.childElementCount < values.length) svg.append(svgEl('rect', { class: className }));
  for (let i = 0; i < values.length; i++) {
    const h = values[i] > 0 ? Math.max(1, (values[i] / peak) * height) : 0;
    const bar = svg.children[i];
    bar.setAttribute('x', (i * slot + slot * 0.1).toFixed(1));
    bar.setAttribute('width', (slot * 0.8).toFixed(1));
    bar.setAttribute('y', (height - h).toFixed(1));
    bar.setAttribute('height', h.toFixed(1));
  }
  return Math.max(...values, 0);
}

// A histogram's observations per bucket, from its cumulative buckets,
// up to the last bucket that has any; each with its upper bound.
export function bucketCounts(buckets) {
  const list = Array.isArray(buckets) ? buckets : [];
  const counts = [];
  let previous = 0;
  for (const b of list) {
    const cumulative = Number(b && b.count) || 0;
    counts.push({ le: String(b && b.le), count: Math.max(0, cumulative - previous) });
    previous = cumulative;
  }
  let last = counts.length;
  while (last > 0 && counts[last - 1].count === 0) last--;
  return counts.slice(0, last);
}
