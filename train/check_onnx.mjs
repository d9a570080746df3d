// Check onnx/vision_encoder.onnx (onnxruntime-web, wasm backend, in Node) against the PyTorch outputs
// dumped by `train/export.py` into train/out/onnx_check/ (test items 0..2 as one batch of 3 images).
// usage: node train/check_onnx.mjs public/models/tiny-vlm-shapes [train/out/onnx_check]
// (onnxruntime-node's native binary is missing here, so the wasm build is used.)
import * as ort from 'onnxruntime-web';
import fs from 'node:fs';
const dst = process.argv[2];
const cdir = process.argv[3] ?? 'train/out/onnx_check';
ort.env.wasm.numThreads = 1;
const f32 = (p) => { const b = fs.readFileSync(p); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); };
const meta = JSON.parse(fs.readFileSync(`${cdir}/meta.json`, 'utf8'));
const sess = await ort.InferenceSession.create(fs.readFileSync(`${dst}/onnx/vision_encoder.onnx`), { executionProviders: ['wasm'] });
console.log('inputs', sess.inputNames, 'outputs', sess.outputNames);
if (sess.inputNames.join() !== 'pixel_values,pixel_attention_mask' || sess.outputNames.join() !== 'image_features') process.exit(1);
const ref = f32(`${cdir}/image_features.f32`);
const [B, N, C, H, W] = meta.pixel_shape;
const pxAll = f32(`${cdir}/pixel_values.f32`);
let worst = 0;
// run as [1, 3] and as [3, 1] (dynamic batch_size and num_images)
for (const [b, n] of [[B, N], [B * N, 1]]) {
  const px = new ort.Tensor('float32', pxAll, [b, n, C, H, W]);
  const mask = new ort.Tensor('bool', new Uint8Array(b * n * H * W).fill(1), [b, n, H, W]);
  const out = await sess.run({ pixel_values: px, pixel_attention_mask: mask });
  const got = out.image_features.data;
  let md = 0; for (let i = 0; i < ref.length; i++) md = Math.max(md, Math.abs(ref[i] - got[i]));
  console.log(`[${b},${n}] image_features`, out.image_features.dims, 'max |onnx - torch| =', md);
  if (out.image_features.dims.join() !== meta.features_shape.join()) process.exit(1);
  worst = Math.max(worst, md);
}
if (!(worst < 1e-3)) process.exit(1);
