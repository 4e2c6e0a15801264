/** Stands in for ComfyUI's `scripts/api.js` in vitest: an EventTarget (as ComfyApi is) whose `fetchApi` a test
 * points at a `FakeBackend`. */

type FetchApi = (route: string, init?: RequestInit) => Promise<Response>;

class FakeApi extends EventTarget {
  fetchApi: FetchApi = async () => new Response("404: Not Found", { status: 404 });
  apiURL(path: string): string {
    return `/api${path}`;
  }
}

export const api = new FakeApi();
