// How times, ages and values read on the page.

export const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : "—");
export const fmtAge = (s) => (s == null ? "—" : s < 60 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`);
export const json = (v) => JSON.stringify(v, null, 2);
