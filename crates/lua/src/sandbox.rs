//! The environment Lua code runs in: per-process globals over read-only shared libraries.
//!
//! A worker's state holds many processes, so nothing a process can reach may be shared and
//! writable:
//!
//! - Each process (and each function call) gets its own `_ENV` table; its globals are its own.
//!   The table's metatable (`__index` = the entry's base table) is hidden (`__metatable`).
//! - Libraries and modules are read-only proxies: writes raise, `pairs` iterates the real
//!   table without exposing it, `rawset` refuses them, and the string metatable is hidden.
//! - Not available: `load`, `loadstring`, `dofile`, `require` of files, `debug`, `io`,
//!   `package`, and `os` except `time`, `clock`, `date`, `difftime`; `collectgarbage` only
//!   answers `"count"`.
//! - `process` and `channel` are globals in every entry (as in Wippy). `require(name)` returns
//!   them too, and returns `json`, `time` and `http` only when the entry lists them in its
//!   `modules`; other names raise `module 'x' not found` or name the missing `modules` entry.
//!
//! Each entry's chunk is compiled once per worker as `function(_ENV, ...) <source> end`, so
//! its prototypes are shared and each process pays only for its own closures and globals.

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};

use crate::modules;

/// The Lua side of a worker: module proxies and the helpers that start an entry.
pub(crate) struct Sandbox {
    /// `make_meta(entry, allowed_modules)` → metatable for process environments.
    make_meta: Function,
    /// `bootstrap(factory, env, method, entry, ...)` → `true, results...` or `false, err, kind`.
    pub(crate) bootstrap: Function,
}

const SETUP: &str = r#"
local modules, traceback, print, doomed = ...
local next, type, error, setmetatable, rawset, tostring, xpcall =
      next, type, error, setmetatable, rawset, tostring, xpcall
local protected = setmetatable({}, { __mode = "k" })

local function readonly(t)
  for k, v in next, t do
    if type(v) == "table" and not protected[v] then t[k] = readonly(v) end
  end
  local proxy = {}
  setmetatable(proxy, {
    __index = t,
    __newindex = function() error("attempt to modify a read-only table", 2) end,
    __pairs = function()
      local k
      return function()
        local v
        k, v = next(t, k)
        return k, v
      end
    end,
    __len = function() return #t end,
    __metatable = false,
  })
  protected[proxy] = true
  return proxy
end

getmetatable("").__metatable = false

-- A process that must end (failed by the hook, or asked to stop) cannot be kept alive by
-- catching the error the hook raises: the protected calls re-raise it.
local function check(ok, ...)
  local why = doomed()
  if why then error(why, 0) end
  return ok, ...
end

local base = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = function(f, ...) return check(pcall(f, ...)) end,
  xpcall = function(f, h, ...) return check(xpcall(f, h, ...)) end,
  select = select, tonumber = tonumber,
  tostring = tostring, type = type, rawequal = rawequal, rawget = rawget,
  rawlen = rawlen, setmetatable = setmetatable, getmetatable = getmetatable,
  print = print, _VERSION = _VERSION,
  rawset = function(t, k, v)
    if protected[t] then error("attempt to modify a read-only table", 2) end
    return rawset(t, k, v)
  end,
  collectgarbage = function(opt)
    if opt == nil or opt == "count" then return collectgarbage("count") end
    error("collectgarbage: only \"count\" is allowed", 2)
  end,
  string = readonly(string), table = readonly(table), math = readonly(math),
  utf8 = readonly(utf8), coroutine = readonly(coroutine),
  os = readonly({ time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }),
}

local proxies = {}
for name, m in next, modules do proxies[name] = readonly(m) end
local always = { process = true, channel = true }

local function make_meta(entry, allowed)
  local b = {}
  for k, v in next, base do b[k] = v end
  b.process = proxies.process
  b.channel = proxies.channel
  b.require = function(name)
    local m = proxies[name]
    if m == nil then error("module '" .. tostring(name) .. "' not found", 2) end
    if not always[name] and not allowed[name] then
      error("module '" .. name .. "' is not enabled for " .. entry .. " (add it to modules)", 2)
    end
    return m
  end
  return { __index = b, __metatable = false }
end

local function bootstrap(factory, env, method, entry, ...)
  local ok, mod = xpcall(factory, traceback, env)
  if not ok then return false, mod end
  local f = mod
  if type(mod) == "table" then f = method ~= "" and mod[method] or nil end
  if type(f) ~= "function" then return false, nil, "method" end
  return xpcall(f, traceback, ...)
end

return make_meta, bootstrap
"#;

impl Sandbox {
    /// Builds the module tables and the helpers in `lua`.
    pub(crate) fn new(lua: &Lua) -> mlua::Result<Sandbox> {
        let mods = lua.create_table()?;
        mods.raw_set("process", modules::process::module(lua)?)?;
        mods.raw_set("channel", modules::channel::module(lua)?)?;
        mods.raw_set("time", modules::time::module(lua)?)?;
        mods.raw_set("json", modules::json::module(lua)?)?;
        mods.raw_set("http", modules::http::module(lua)?)?;
        let traceback = lua.create_function(|lua, err: LuaValue| {
            let text = match &err {
                LuaValue::String(s) => s.to_string_lossy(),
                LuaValue::Error(e) => e.to_string(),
                other => other
                    .to_string()
                    .unwrap_or_else(|_| other.type_name().to_owned()),
            };
            lua.traceback(Some(&text), 1)
        })?;
        let print = lua.create_function(|_, args: MultiValue| {
            let line: Vec<String> = args
                .iter()
                .map(|v| v.to_string().unwrap_or_else(|_| v.type_name().to_owned()))
                .collect();
            let pid = match crate::actor::current() {
                Some(crate::actor::Actor::Process(p)) => p.ctx.pid().to_string(),
                _ => String::new(),
            };
            tracing::info!(target: "wsrelay_lua::print", pid = %pid, "{}", line.join("\t"));
            Ok(())
        })?;
        let doomed = lua.create_function(|_, ()| {
            Ok(crate::actor::current().and_then(|actor| {
                let failure = actor.slice().failure.borrow().clone();
                failure.or_else(|| actor.stop_requested().map(|_| "process stopped".to_owned()))
            }))
        })?;
        let (make_meta, bootstrap): (Function, Function) = lua
            .load(SETUP)
            .set_name("=wsrelay-lua sandbox")
            .call((mods, traceback, print, doomed))?;
        Ok(Sandbox {
            make_meta,
            bootstrap,
        })
    }

    /// The metatable of environments for `entry`, which may require `allowed` modules.
    pub(crate) fn entry_meta(
        &self,
        lua: &Lua,
        entry: &str,
        allowed: &[String],
    ) -> mlua::Result<Table> {
        let set = lua.create_table()?;
        for name in allowed {
            set.raw_set(name.as_str(), true)?;
        }
        self.make_meta.call((entry, set))
    }
}

/// A fresh environment for one process or call.
pub(crate) fn new_env(lua: &Lua, meta: &Table) -> mlua::Result<Table> {
    let env = lua.create_table_with_capacity(0, 1)?;
    env.raw_set("_G", &env)?;
    env.set_metatable(Some(meta.clone()))?;
    Ok(env)
}

/// Wraps a chunk so each call runs its body with the `_ENV` it is given. The prefix sits on
/// the first line, so line numbers in errors stay those of the source.
pub(crate) fn wrap_source(source: &str) -> String {
    format!("return function(_ENV, ...) {source}\nend")
}
