#!/usr/bin/env node
// ONNX Runtime (npm's onnxruntime-node, its bundled CPU library) as the peer
// of `distq bench`: the same model file, the same threads, the same batch.
//
//   node scripts/ort_bench.js MODEL.onnx --batch 1,32 --threads 2 --min-time 3
//        [--run IN.f32 C,H,W OUT.f32]   (also: ORT's output for raw float32 input)
//
// Prints one `ort,` CSV line per batch: model, batch, setup ms (session
// creation: parse + graph optimization), first-inference ms, p50 and p99 ms,
// images/s. onnxruntime-node comes from `npm install onnxruntime-node
// --ignore-scripts` (NODE_PATH or a node_modules folder above the cwd); it is
// only ever a comparison, never a dependency of distq.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function parseArgs(argv) {
  const a = { batch: [1], threads: 2, minTime: 3, run: null };
  a.model = argv[0];
  for (let i = 1; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--batch') a.batch = argv[++i].split(',').map(Number);
    else if (k === '--threads') a.threads = Number(argv[++i]);
    else if (k === '--min-time') a.minTime = Number(argv[++i]);
    else if (k === '--run') a.run = { input: argv[++i], chw: argv[++i].split(',').map(Number), output: argv[++i] };
    else throw new Error(`ort_bench.js: unknown option '${k}'`);
  }
  if (!a.model) throw new Error('usage: ort_bench.js MODEL.onnx [--batch 1,32] [--threads T] [--min-time S]');
  return a;
}

function percentile(sorted, p) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const opts = {
    intraOpNumThreads: a.threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all', executionProviders: ['cpu'],
  };
  let t0 = process.hrtime.bigint();
  const session = await ort.InferenceSession.create(a.model, opts);
  const setupMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const inName = session.inputNames[0], outName = session.outputNames[0];
  if (a.run) {
    const buf = fs.readFileSync(a.run.input);
    const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    const per = a.run.chw.reduce((p, v) => p * v, 1);
    const feeds = { [inName]: new ort.Tensor('float32', Float32Array.from(x), [x.length / per, ...a.run.chw]) };
    const out = (await session.run(feeds))[outName];
    fs.writeFileSync(a.run.output, Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  }
  // the input's per-image dims from the model (dim 0 is the symbolic batch)
  const meta = session.inputMetadata ? session.inputMetadata[0] : null;
  let chw = a.run ? a.run.chw : null;
  if (!chw && meta && meta.shape) chw = meta.shape.slice(1).map(Number);
  if (!chw || chw.some((d) => !(d > 0))) throw new Error(`${a.model}: cannot tell the input's dims; pass --run`);
  const per = chw.reduce((p, v) => p * v, 1);
  for (const b of a.batch) {
    const x = new Float32Array(b * per);
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 12.9898) * 0.5; // fixed, not all zeros
    const feeds = { [inName]: new ort.Tensor('float32', x, [b, ...chw]) };
    t0 = process.hrtime.bigint();
    await session.run(feeds);
    const firstMs = Number(process.hrtime.bigint() - t0) / 1e6;
    for (let i = 0; i < 2; i++) await session.run(feeds); // warm-up
    const times = [];
    const start = process.hrtime.bigint();
    while (times.length < 5 || Number(process.hrtime.bigint() - start) / 1e9 < a.minTime) {
      const s = process.hrtime.bigint();
      await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
    const total = times.reduce((p, v) => p + v, 0);
    times.sort((p, q) => p - q);
    console.log(`ort,${a.model},${b},${setupMs.toFixed(1)},${firstMs.toFixed(2)},` +
                `${percentile(times, 50).toFixed(3)},${percentile(times, 99).toFixed(3)},` +
                `${((b * times.length) / (total / 1e3)).toFixed(1)}`);
  }
}

main().catch((e) => { console.error(`ort_bench.js: ${e.message}`); process.exit(1); });
