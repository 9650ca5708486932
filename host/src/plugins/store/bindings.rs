//! Host-side bindings of `notes:store` (`wit/store.wit`): the backend's
//! calls run on the caller's task (async exports), and so do the plugin's
//! HTTP requests (`wasi:http`, linked beside them).

wasmtime::component::bindgen!({
    path: "../wit/store.wit",
    world: "store-backend",
    exports: { default: async },
});
