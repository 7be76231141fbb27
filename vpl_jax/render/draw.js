// Top-down drawing of a task's layout and one agent's path, step by step (no dependencies).
// Shared by the labelling page and the experiments' rollout renders (vpl_jax.render).
"use strict";

function view(canvas, scene, pos) {
  const pad = 20, w = canvas.width, h = canvas.height;
  let x0, x1, y0, y1;
  if (scene.kind === "arena") {
    [x0, x1, y0, y1] = scene.bounds;
  } else {
    const xs = pos.map((p) => p[0]), ys = pos.map((p) => p[1]);
    x0 = Math.min(...xs); x1 = Math.max(...xs); y0 = Math.min(...ys); y1 = Math.max(...ys);
    if (scene.kind === "road") {
      const half = scene.lanes.length * scene.lane_width / 2 + 1;
      y0 = Math.min(y0, -half); y1 = Math.max(y1, half);
      x0 -= scene.car[0]; x1 += scene.car[0];
    }
    const m = 0.05 * Math.max(x1 - x0, y1 - y0, 1e-3);
    x0 -= m; x1 += m; y0 -= m; y1 += m;
  }
  const s = Math.min((w - 2 * pad) / (x1 - x0), (h - 2 * pad) / (y1 - y0));
  const ox = (w - s * (x1 - x0)) / 2, oy = (h - s * (y1 - y0)) / 2;
  return { s, X: (x) => ox + s * (x - x0), Y: (y) => h - oy - s * (y - y0), x0, x1, y0, y1 };
}

function drawLayout(ctx, scene, v) {
  if (scene.kind === "arena") {
    ctx.strokeStyle = "#444"; ctx.lineWidth = 2;
    ctx.strokeRect(v.X(v.x0), v.Y(v.y1), v.s * (v.x1 - v.x0), v.s * (v.y1 - v.y0));
    const b = scene.bystander;
    ctx.setLineDash([6, 4]); ctx.strokeStyle = "#c80";
    ctx.beginPath(); ctx.moveTo(v.X(b.x[0]), v.Y(b.y)); ctx.lineTo(v.X(b.x[1]), v.Y(b.y)); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "rgba(220,50,50,0.35)";
    ctx.beginPath(); ctx.arc(v.X(scene.hazard.xy[0]), v.Y(scene.hazard.xy[1]), v.s * scene.hazard.r, 0, 7); ctx.fill();
    for (const g of scene.goals) {
      ctx.fillStyle = "rgba(40,160,60,0.35)";
      ctx.beginPath(); ctx.arc(v.X(g.xy[0]), v.Y(g.xy[1]), v.s * scene.goal_radius, 0, 7); ctx.fill();
      ctx.fillStyle = "#174"; ctx.font = "14px sans-serif";
      ctx.fillText("goal " + g.name, v.X(g.xy[0]) + 4, v.Y(g.xy[1]) - 4);
    }
  } else if (scene.kind === "road") {
    const half = scene.lanes.length * scene.lane_width / 2;
    ctx.fillStyle = "#ddd";
    ctx.fillRect(v.X(v.x0), v.Y(half), v.s * (v.x1 - v.x0), v.s * 2 * half);
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.setLineDash([10, 10]);
    for (let k = 1; k < scene.lanes.length; k++) {
      const y = -half + k * scene.lane_width;
      ctx.beginPath(); ctx.moveTo(v.X(v.x0), v.Y(y)); ctx.lineTo(v.X(v.x1), v.Y(y)); ctx.stroke();
    }
    ctx.setLineDash([]); ctx.strokeStyle = "#333";
    for (const y of [-half, half]) {
      ctx.beginPath(); ctx.moveTo(v.X(v.x0), v.Y(y)); ctx.lineTo(v.X(v.x1), v.Y(y)); ctx.stroke();
    }
  }
}

// seg: {positions: [[x, y]] * T, alive: [bool] * T}; frame: steps shown so far.
function drawSegment(canvas, scene, seg, frame) {
  const ctx = canvas.getContext("2d"), pos = seg.positions;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  const v = view(canvas, scene, pos);
  drawLayout(ctx, scene, v);
  const t = Math.min(frame, pos.length - 1);
  ctx.strokeStyle = "#36c"; ctx.lineWidth = 3; ctx.beginPath();
  for (let i = 0; i <= t; i++) {
    const [x, y] = pos[i];
    if (i === 0) ctx.moveTo(v.X(x), v.Y(y)); else ctx.lineTo(v.X(x), v.Y(y));
  }
  ctx.stroke();
  const [x, y] = pos[t];
  ctx.fillStyle = seg.alive[t] ? "#14a" : "#888";
  if (scene.kind === "road") {
    const [l, w] = scene.car;
    ctx.fillRect(v.X(x - l / 2), v.Y(y + w / 2), v.s * l, v.s * w);
  } else {
    ctx.beginPath(); ctx.arc(v.X(x), v.Y(y), 6, 0, 7); ctx.fill();
  }
  ctx.fillStyle = "#555"; ctx.font = "12px sans-serif";
  ctx.fillText(`step ${t + 1}/${pos.length}`, 8, canvas.height - 8);
}
