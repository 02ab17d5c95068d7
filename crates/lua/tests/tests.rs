//! Integration tests of `wsrelay-lua`: real Lua states on real processes, one module per area,
//! built as one binary.

/// As in the `wsrelay` binary: the Lua states then allocate with mimalloc directly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod support;

mod lua_bounds;
mod lua_channel;
mod lua_coroutines;
mod lua_dispatch;
mod lua_http;
mod lua_http_client;
mod lua_isolation;
mod lua_json;
mod lua_listen;
mod lua_patterns;
mod lua_pg;
mod lua_pg_watch;
mod lua_process;
mod lua_random;
mod lua_reload;
mod lua_seed;
mod lua_values;
mod wippy_modules;
