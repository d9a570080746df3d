/**
 * Errors as OpenAI's API sends them: an HTTP status and a body
 * `{error: {message, type, param, code}}`, which the official clients turn
 * into `APIError`s (`.status`, `.code`, `.param`). The HTTP layer throws
 * `ApiError`s for what it owns (routes, methods, bodies, field types);
 * `fromEngineError` maps what `chat.completions.create` throws.
 */
import type { ServerResponse } from 'node:http';

export type ApiErrorType = 'invalid_request_error' | 'server_error';

export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null };
}

export class ApiError extends Error {
  override name = 'ApiError';

  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    /** Extra response headers (e.g. `Allow` with a 405). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get type(): ApiErrorType {
    return this.status >= 500 ? 'server_error' : 'invalid_request_error';
  }

  toBody(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A field of the request body that has the wrong type or value (400, naming the field). */
export function badParam(param: string, message: string): ApiError {
  return new ApiError(400, message, 'invalid_value', param);
}

/**
 * What `chat.completions.create` threw → an ApiError. The engine checks its
 * own input and throws TypeError / RangeError / ImageInputError with a
 * message naming the problem (400); an unknown model names the model (404,
 * `model_not_found`); a duplicate `request_id` is a conflict (409); anything
 * else is the engine failing (500).
 */
export function fromEngineError(e: unknown, models: { served: string } | null): ApiError {
  if (e instanceof ApiError) return e;
  const message = e instanceof Error ? e.message : String(e);
  const unknownModel = /^model '(.*)' is not loaded/.exec(message);
  if (unknownModel) {
    const hint = models ? `; this server serves '${models.served}' (GET /v1/models), or omit 'model'` : '';
    return new ApiError(404, `the model '${unknownModel[1]}' does not exist${hint}`, 'model_not_found', 'model');
  }
  if (/request with id '.*' is already running/.test(message)) return new ApiError(409, message, 'request_id_in_use', 'request_id');
  if (e instanceof TypeError || e instanceof RangeError || (e instanceof Error && e.name === 'ImageInputError')) {
    return new ApiError(400, message, 'invalid_value', paramIn(message));
  }
  return new ApiError(500, `the engine failed: ${message}`);
}

/** Writes `err` as the whole response (when nothing has been sent yet). */
export function sendError(res: ServerResponse, err: ApiError): void {
  const body = JSON.stringify(err.toBody());
  res.writeHead(err.status, { ...err.headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** The request field an engine message is about, when it names one. */
function paramIn(message: string): string | null {
  const named = /'(messages|max_tokens|temperature|top_p|top_k|seed|stop)'/.exec(message) ?? /\((max_tokens)\)/.exec(message);
  if (named) return named[1];
  if (/^(each message|image \d|the prompt)/.test(message) || /takes no images/.test(message)) return 'messages';
  if (/^compression |^unknown press/.test(message)) return 'kv_compression';
  return null;
}
