/**
 * Turns on the one GPUDevice: the engine's steps and the vision encoder's
 * onnxruntime-web runs share it, and must not interleave — ORT's WebGPU EP
 * keeps its own pending commands and error scopes, and a step of ours
 * submitted in the middle of an ORT run hung it (seen in Chromium on
 * SwiftShader). Each holder runs to completion, in arrival order.
 */
export class GpuTurns {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const turn = this.tail.then(work);
    this.tail = turn.catch(() => {});
    return turn;
  }
}
