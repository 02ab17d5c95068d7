-- The environment of processes (sandbox.rs): read-only library proxies, the protected calls
-- that re-raise for a doomed process, `require` of the allowed modules, and the function
-- that starts an entry.
local modules, traceback, print, doomed, guarded_setmetatable, coroutines, make_logger, make_http_client = ...
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
  rawlen = rawlen, setmetatable = guarded_setmetatable, getmetatable = getmetatable,
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
  utf8 = readonly(utf8), coroutine = readonly(coroutines),
  os = readonly({ time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }),
}

local proxies = {}
for name, m in next, modules do proxies[name] = readonly(m) end
local always = { process = true, channel = true, errors = true }

local function make_meta(entry, allowed)
  local b = {}
  for k, v in next, base do b[k] = v end
  b.process = proxies.process
  b.channel = proxies.channel
  b.errors = proxies.errors
  local root_logger, http_client
  b.require = function(name)
    local m = proxies[name]
    if m == nil then error("module '" .. tostring(name) .. "' not found", 2) end
    if not always[name] and not allowed[name] then
      error("module '" .. name .. "' is not enabled for " .. entry .. " (add it to modules)", 2)
    end
    if name == "logger" then
      -- Each entry has its own root logger, so every line names the entry that wrote it.
      if root_logger == nil then root_logger = make_logger(entry) end
      return root_logger
    end
    if name == "http_client" then
      -- Each entry has its own table: its calls run under the entry's policy.
      if http_client == nil then http_client = readonly(make_http_client(entry)) end
      return http_client
    end
    return m
  end
  return { __index = b, __metatable = false }
end

-- Run under `xpcall` as the coroutine's body (sandbox.rs, `Sandbox::xpcall`). The entry is
-- tail-called, so no frame of this function stays under a waiting process.
local missing = {}
local function start(factory, env, method, ...)
  local mod = factory(env)
  local f = mod
  if type(mod) == "table" then f = method ~= "" and mod[method] or nil end
  if type(f) ~= "function" then return missing end
  return f(...)
end

return make_meta, start, xpcall, missing
