// The floor: the least a worker can do between a client and the upstream. It forwards the
// request (method, path, headers, body stream) to UPSTREAM and returns the response as it comes.
// It runs under the same plain workerd set-up as the gateway, so gateway minus floor is what
// Switchyard itself costs.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(new URL(url.pathname + url.search, env.UPSTREAM), request);
  },
};
