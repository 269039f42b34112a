// Times the gateway's module instantiation inside workerd, where a worker's own clocks stand
// still: GET /noop answers at once; GET /load first imports build/index.js, whose top level
// instantiates the wasm (`new WebAssembly.Instance`) and runs `__wbindgen_start`. The client
// times both; the difference on the first /load of a fresh workerd is the instantiation.
export default {
  async fetch(request) {
    if (new URL(request.url).pathname === "/load") await import("./index.js");
    return new Response("ok");
  },
};
