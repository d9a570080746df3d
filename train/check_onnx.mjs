// Check onnx/vision_encoder.onnx with onnxruntime-node against PyTorch outputs dumped by
// `train/export.py` (pixel_values / image_features of test item 0 in DST/.check/).
// usage: node train/check_onnx.mjs public/models/tiny-vlm-shapes
import * as ort from 'onnxruntime-node';
import fs from 'node:fs';
const dst = process.argv[2];
const f32 = (p) => { const b = fs.readFileSync(p); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
const meta = JSON.parse(fs.readFileSync(`${dst}/.check/meta.json`, 'utf8'));
const sess = await ort.InferenceSession.create(`${dst}/onnx/vision_encoder.onnx`);
const px = new ort.Tensor('float32', f32(`${dst}/.check/pixel_values.f32`), meta.pixel_shape);
const out = await sess.run({ pixel_values: px });
const ref = f32(`${dst}/.check/image_features.f32`);
const got = out.image_features.data;
let md = 0; for (let i = 0; i < ref.length; i++) md = Math.max(md, Math.abs(ref[i] - got[i]));
console.log('image_features', out.image_features.dims, 'max |onnx - torch| =', md);
if (!(md < 1e-3)) process.exit(1);
