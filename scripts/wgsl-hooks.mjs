// Node ESM hooks so `import src from './x.wgsl?raw'` works outside Vite
// (the CLI and benchmarks run TypeScript through tsx): the module's default
// export is the file's text, exactly what Vite's `?raw` gives.
import { readFile } from 'node:fs/promises';

export async function load(url, context, nextLoad) {
  if (url.startsWith('file:') && /\.wgsl(\?raw)?$/.test(url)) {
    const text = await readFile(new URL(url.replace(/\?raw$/, '')), 'utf8');
    return { format: 'module', source: `export default ${JSON.stringify(text)};`, shortCircuit: true };
  }
  return nextLoad(url, context);
}
