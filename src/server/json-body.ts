/**
 * A request's JSON body, read under a size limit: a declared
 * `Content-Length` over the limit is refused before a byte is read; a body
 * that grows past it (chunked) is refused as soon as it does, and what
 * follows is discarded, never kept.
 */
import type { IncomingMessage } from 'node:http';
import { ApiError } from './api-error.ts';

/** application/json, or any `+json` type, with parameters (charset) allowed. */
const JSON_TYPE = /^application\/([\w.-]+\+)?json\s*(;|$)/i;

export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const type = req.headers['content-type'];
  if (!type || !JSON_TYPE.test(type)) {
    throw new ApiError(415, `the body must be JSON: send 'Content-Type: application/json' (got ${type ? `'${type}'` : 'none'})`, 'unsupported_media_type');
  }
  const encoding = req.headers['content-encoding'];
  if (encoding && encoding.toLowerCase() !== 'identity') {
    throw new ApiError(415, `Content-Encoding '${encoding}' is not supported; send the body uncompressed`, 'unsupported_media_type');
  }
  const declared = Number(req.headers['content-length']);
  if (declared > maxBytes) throw tooLarge(maxBytes, `${declared} bytes`);
  const text = await readText(req, maxBytes);
  if (text.trim() === '') throw new ApiError(400, 'the request body is empty; send a JSON object', 'invalid_json');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the body is not valid JSON: ${(e as Error).message}`, 'invalid_json');
  }
}

function readText(req: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData);
      req.resume(); // discard the rest (not kept) while the 413 goes out
      chunks.length = 0;
      reject(tooLarge(maxBytes, `more than ${maxBytes} bytes`));
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new Error('the client closed the connection while sending the body'));
    });
  });
}

function tooLarge(maxBytes: number, got: string): ApiError {
  return new ApiError(413, `the request body (${got}) is over the server's limit of ${maxBytes} bytes`, 'request_too_large', null, { Connection: 'close' });
}
