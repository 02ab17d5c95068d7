-- The coroutine library processes see (preempt/mod.rs). The instruction hook also preempts a
-- coroutine the Lua code resumed itself: it yields that coroutine and marks it preempted. Its
-- resumer (this `resume`) sees the mark, passes the preemption up by yielding its own thread
-- the same way, and, when resumed again, resumes the coroutine again; at the process's main
-- coroutine the yield reaches the worker, which runs the other processes. A Rust function
-- waiting inside a coroutine (inbox:receive(), time.sleep) is passed up the same way, so it
-- blocks the process, not the coroutine's resumer. None of this is visible to the Lua code:
-- its own yields and values pass unchanged.
-- `co_resume` and `close` are the standard functions, telling the preemption signal which
-- coroutine runs (raw/preempt.rs).
local coroutine, co_resume, close, PENDING, took_preemption, mark_preempted, clear_preempted,
      doomed, type_error = ...
local create, co_yield, status = coroutine.create, coroutine.yield, coroutine.status
local select, error, type = select, error, type

local after

-- What a resume of `co` returned: pass preemptions and waits up, then resume `co` again.
after = function(co, ok, ...)
  if ok and status(co) == "suspended" then
    local n = select("#", ...)
    if n == 0 and took_preemption(co) then
      mark_preempted()
      co_yield()
      return after(co, co_resume(co))
    elseif n == 1 and (...) == PENDING then
      co_yield(PENDING)
      return after(co, co_resume(co))
    end
  end
  if not ok then
    -- A process that must end cannot be kept alive by catching the hook's error here.
    local why = doomed()
    if why then error(why, 0) end
  end
  return ok, ...
end

-- Argument errors are raised here, not by the C functions below, so that they name the
-- function and the caller's line as C Lua does (see stdlib/args.rs).
local function resume(...)
  local co = ...
  if type(co) ~= "thread" then error(type_error("coroutine.resume", "thread", ...), 2) end
  return after(co, co_resume(...))
end

local function yield(...)
  clear_preempted()
  return co_yield(...)
end

-- Tail-called by a wrapped function: level 2 is its caller, as luaL_where(L, 1) in auxwrap.
local function wrap_after(co, ok, ...)
  if ok then return ... end
  local err = ...
  if status(co) == "dead" then
    -- An error inside: close its pending to-be-closed variables, as auxwrap does.
    local closed, close_err = close(co)
    if not closed then err = close_err end
  end
  error(err, type(err) == "string" and 2 or 0)
end

local function wrap(...)
  local f = ...
  if type(f) ~= "function" then error(type_error("coroutine.wrap", "function", ...), 2) end
  local co = create(f)
  return function(...) return wrap_after(co, resume(co, ...)) end
end

return {
  create = create, resume = resume, yield = yield, wrap = wrap, status = status,
  running = coroutine.running, isyieldable = coroutine.isyieldable, close = close,
}
