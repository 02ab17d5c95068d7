-- The Lua side of the Rust library functions (stdlib/mod.rs). Runs once per worker state,
-- with the real string and math tables: afterwards string.find/match/gmatch/gsub and
-- math.random/randomseed are these wrappers, also as string methods ("x"):find(...), and
-- the C originals are unreachable.
--
-- The Rust functions return `false, message` for an error; the wrappers raise the message
-- as a plain string with the position of their caller (level 2, through tail calls), as the
-- C functions do with luaL_error. gmatch iterators and gsub with
-- a function or table replacement call back into Lua from here, so the replacement runs as
-- ordinary (preemptible) Lua code and its errors propagate unchanged.
local prim, string, math, concat = ...
local error, type, select, sub = error, type, select, string.sub
local find, match, gmatch_args, scan, gsub = prim.find, prim.match, prim.gmatch, prim.scan, prim.gsub

-- Always tail-called by a wrapper, so level 2 is the wrapper's caller.
local function raise_if(first, ...)
  if first == false then error((...), 2) end
  return first, ...
end

local random, randomseed = prim.random, prim.randomseed
math.random = function(...) return raise_if(random(...)) end
math.randomseed = function(...) return raise_if(randomseed(...)) end

string.find = function(...) return raise_if(find(...)) end
string.match = function(...) return raise_if(match(...)) end

-- Tail-called by string.gmatch with what the Rust gmatch returned.
local function iterator(s, p, pos)
  if s == false then error(p, 2) end
  local last = -1
  local function step(start, stop, ...) -- tail-called by the iterator
    if start == false then error(stop, 2) end
    if start == nil then return end
    pos, last = stop, stop
    return ...
  end
  return function() return step(scan(s, p, pos, last, false, false)) end
end

string.gmatch = function(...) return iterator(gmatch_args(...)) end

-- gsub with a function or table replacement: s and p are strings, max the replacement limit.
-- Tail-called by string.gsub, so level 2 is the caller of string.gsub.
local function replace_each(s, p, repl, max)
  local is_function = type(repl) == "function"
  local anchored = sub(p, 1, 1) == "^"
  local out, n = {}, 0
  local pos, last, count, changed = 0, -1, 0, false
  local function replacement(start, stop, ...) -- called by replace_each
    if start == false then error(stop, 3) end
    if start == nil then return nil end
    local value
    if is_function then value = repl(...) else value = repl[(...)] end
    return start, stop, value
  end
  while count < max do
    local start, stop, value = replacement(scan(s, p, pos, last, true, not is_function))
    if start == nil then break end
    count = count + 1
    n = n + 1; out[n] = sub(s, pos + 1, start)
    if not value then
      n = n + 1; out[n] = sub(s, start + 1, stop)
    else
      local t = type(value)
      if t ~= "string" and t ~= "number" then
        error("invalid replacement value (a " .. t .. ")", 2)
      end
      changed = true
      n = n + 1; out[n] = value
    end
    pos, last = stop, stop
    if anchored then break end
  end
  if not changed then return s, count end
  n = n + 1; out[n] = sub(s, pos + 1)
  return concat(out), count
end

-- Tail-called by string.gsub with the replacement and what the Rust gsub returned.
local function gsub_done(repl, result, a, b, c)
  if result == false then error(a, 2) end
  if result == true then return replace_each(a, b, repl, c) end
  return result, a
end

string.gsub = function(...) return gsub_done((select(3, ...)), gsub(...)) end
