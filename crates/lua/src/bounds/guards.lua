-- Guards around C library functions whose work is not bounded by their arguments' size
-- (bounds/mod.rs). Runs once per worker state with the real library tables. A C loop never
-- meets the instruction hook, so these calls either go to the C function when its work is
-- bounded by memory the caller already holds, or run as Lua code, which the hook preempts.
--
-- The C functions keep their library names as upvalues, so that an argument error they raise
-- names the function as C Lua does ('insert'); its position prefix is this chunk's line
-- where C Lua gives the caller's (the traceback still shows the caller).
local string, table, math, has_metatable = ...
local type, select, error, rawget, setmetatable, tointeger, tonumber, format =
      type, select, error, rawget, setmetatable, math.tointeger, tonumber, string.format
local rep, insert, remove, move, concat, sort =
      string.rep, table.insert, table.remove, table.move, table.concat, table.sort

-- A plain table's length and contents are real: C loops over them end with its memory.
local function plain(t)
  return type(t) == "table" and not has_metatable(t)
end

-- luaL_checkinteger for the Lua versions (level 3: the caller of the library function).
local function integer(v, n, name)
  local i = tointeger(v)
  if i then return i end
  if tonumber(v) then
    error(format("bad argument #%d to '%s' (number has no integer representation)", n, name), 3)
  end
  error(format("bad argument #%d to '%s' (number expected, got %s)", n, name, type(v)), 3)
end

-- luaL_len: the length, which must be an integer.
local function length(t)
  local n = #t
  if tointeger(n) == nil then error("object length is not an integer", 3) end
  return tointeger(n)
end

-- Repeating nothing: C would still loop n times copying zero bytes.
string.rep = function(s, n, sep)
  if s == "" and (sep == nil or sep == "") and tointeger(n) then return "" end
  return rep(s, n, sep)
end

table.insert = function(t, ...)
  if plain(t) or type(t) ~= "table" then return insert(t, ...) end
  local e = length(t) + 1
  local count = select("#", ...)
  if count == 1 then
    t[e] = ...
    return
  end
  if count ~= 2 then error("wrong number of arguments to 'insert'", 2) end
  local pos, value = ...
  pos = integer(pos, 2, "insert")
  if pos < 1 or pos > e then error("bad argument #2 to 'insert' (position out of bounds)", 2) end
  for i = e, pos + 1, -1 do t[i] = t[i - 1] end
  t[pos] = value
end

table.remove = function(t, pos)
  if plain(t) or type(t) ~= "table" then return remove(t, pos) end
  local size = length(t)
  if pos == nil then pos = size else pos = integer(pos, 2, "remove") end
  if pos ~= size and (pos < 1 or pos > size + 1) then
    error("bad argument #2 to 'remove' (position out of bounds)", 2)
  end
  local value = t[pos]
  while pos < size do
    t[pos] = t[pos + 1]
    pos = pos + 1
  end
  t[pos] = nil
  return value
end

-- Ranges of a plain table up to this size go to C: longer ones may be mostly empty (C would
-- loop over nils), so Lua copies them.
local C_MOVE = 1 << 16

table.move = function(a1, f, e, t, a2)
  local dest = a2
  if dest == nil then dest = a1 end
  local fi, ei, ti = tointeger(f), tointeger(e), tointeger(t)
  if not (fi and ei and ti) or ei < fi or type(a1) ~= "table" or type(dest) ~= "table"
      or (ei - fi < C_MOVE and plain(a1) and plain(dest)) then
    return move(a1, f, e, t, a2)
  end
  -- The same checks as C, then the same copy order.
  if not (fi > 0 or ei < math.maxinteger + fi) then
    error("bad argument #3 to 'move' (too many elements to move)", 2)
  end
  local n = ei - fi + 1
  if ti > math.maxinteger - n + 1 then
    error("bad argument #4 to 'move' (destination wrap around)", 2)
  end
  if ti > ei or ti <= fi or (a2 ~= nil and a2 ~= a1) then
    for i = 0, n - 1 do dest[ti + i] = a1[fi + i] end
  else
    for i = n - 1, 0, -1 do dest[ti + i] = a1[fi + i] end
  end
  return dest
end

table.concat = function(t, sep, i, j)
  if plain(t) or type(t) ~= "table" then return concat(t, sep, i, j) end
  local last = length(t)
  if sep == nil then
    sep = ""
  elseif type(sep) ~= "string" and type(sep) ~= "number" then
    error(format("bad argument #2 to 'concat' (string expected, got %s)", type(sep)), 2)
  end
  i = i == nil and 1 or integer(i, 3, "concat")
  last = j == nil and last or integer(j, 4, "concat")
  local parts, n = {}, 0
  for k = i, last do
    local v = t[k]
    local kind = type(v)
    if kind ~= "string" and kind ~= "number" then
      error(format("invalid value (%s) at index %d in table for 'concat'", kind, k), 2)
    end
    n = n + 1
    parts[n] = v
  end
  return concat(parts, sep)
end

-- A table with a metatable is sorted as a plain copy, then written back: its length and
-- elements may come from metamethods, which C would call without end.
table.sort = function(t, comp)
  if plain(t) or type(t) ~= "table" then return sort(t, comp) end
  local n = length(t)
  if n <= 1 then return end
  if n >= 0x7fffffff then error("bad argument #1 to 'sort' (array too big)", 2) end
  if comp ~= nil and type(comp) ~= "function" then
    error("bad argument #2 to 'sort' (function expected, got " .. type(comp) .. ")", 2)
  end
  local copy = {}
  for k = 1, n do copy[k] = t[k] end
  sort(copy, comp)
  for k = 1, n do t[k] = copy[k] end
end

-- Finalizers run inside the collector with hooks disabled: an endless __gc would hold the
-- worker forever, so objects cannot get one.
local function guarded_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not supported (finalizers cannot be preempted)", 2)
  end
  return setmetatable(t, mt)
end

return guarded_setmetatable
