//! Arguments of the Rust library functions, checked as the C library checks them
//! (`luaL_check*`), with the same error texts: `bad argument #2 to 'find' (string expected,
//! got nil)`.
//!
//! The Rust functions are called by thin Lua wrappers (see `glue.lua`), so the function the
//! user called is the wrapper: its name and whether it was called as a method come from the
//! wrapper's stack frame, as `luaL_argerror` takes them from the C function's.

use mlua::{Integer, Lua, LuaString, Value as LuaValue};

/// The arguments of one call of the library function `name` (`string.find`: the name
/// messages use when the call site gives none).
pub(crate) struct Args<'a> {
    lua: &'a Lua,
    values: &'a [LuaValue],
    name: &'static str,
}

impl<'a> Args<'a> {
    pub(crate) fn new(lua: &'a Lua, values: &'a [LuaValue], name: &'static str) -> Args<'a> {
        Args { lua, values, name }
    }

    /// `luaL_checkinteger`: as [`opt_integer`](Args::opt_integer), but the argument is
    /// required.
    pub(crate) fn integer(&self, n: usize) -> Result<Integer, String> {
        match self.get(n) {
            None | Some(LuaValue::Nil) => Err(self.type_error(n, "number")),
            Some(_) => self.opt_integer(n, 0),
        }
    }

    /// Argument `n` (1-based); `None` when absent ("no value", not `nil`).
    pub(crate) fn get(&self, n: usize) -> Option<&LuaValue> {
        self.values.get(n - 1)
    }

    /// `luaL_checklstring`: a string, or a number converted to one.
    pub(crate) fn string(&self, n: usize) -> Result<LuaString, String> {
        let value = self.get(n).cloned().unwrap_or(LuaValue::Nil);
        let coerced = match value {
            LuaValue::String(s) => Some(s),
            LuaValue::Integer(_) | LuaValue::Number(_) => {
                self.lua.coerce_string(value).map_err(|e| e.to_string())?
            }
            _ => None,
        };
        coerced.ok_or_else(|| self.type_error(n, "string"))
    }

    /// `luaL_optinteger`: `default` when absent or `nil`; else an integer, a float with an
    /// exact integer value, or a string convertible to one.
    pub(crate) fn opt_integer(&self, n: usize, default: Integer) -> Result<Integer, String> {
        match self.get(n) {
            None | Some(LuaValue::Nil) => Ok(default),
            Some(LuaValue::Integer(i)) => Ok(*i),
            Some(value) => {
                let value = value.clone();
                if let Ok(Some(i)) = self.lua.coerce_integer(value.clone()) {
                    return Ok(i);
                }
                if let Ok(Some(_)) = self.lua.coerce_number(value) {
                    return Err(self.error(n, "number has no integer representation"));
                }
                Err(self.type_error(n, "number"))
            }
        }
    }

    /// `luaL_typeerror`: `<expected> expected, got <type>`.
    pub(crate) fn type_error(&self, n: usize, expected: &str) -> String {
        let got = match self.get(n) {
            None => "no value".to_owned(),
            Some(value) => type_name(value),
        };
        self.error(n, &format!("{expected} expected, got {got}"))
    }

    /// `luaL_argerror`: names the argument and the function as the caller wrote the call.
    pub(crate) fn error(&self, n: usize, message: &str) -> String {
        let names = self.lua.inspect_stack(1, |frame| {
            let names = frame.names();
            (names.name.map(|s| s.into_owned()), names.name_what)
        });
        let (name, what) = names.unwrap_or((None, None));
        let mut n = n;
        if what == Some("method") {
            n -= 1;
            if n == 0 {
                let name = name.as_deref().unwrap_or("?");
                return format!("calling '{name}' on bad self ({message})");
            }
        }
        let name = name.unwrap_or_else(|| self.name.to_owned());
        format!("bad argument #{n} to '{name}' ({message})")
    }
}

/// The type name `luaL_typeerror` reports: a table's `__name` metafield if it has one.
fn type_name(value: &LuaValue) -> String {
    if let LuaValue::Table(t) = value {
        if let Some(LuaValue::String(name)) = t.metatable().and_then(|m| m.raw_get("__name").ok()) {
            return name.to_string_lossy();
        }
    }
    match value {
        LuaValue::Integer(_) | LuaValue::Number(_) => "number".to_owned(),
        LuaValue::LightUserData(_) => "light userdata".to_owned(),
        LuaValue::Error(_) => "userdata".to_owned(),
        other => other.type_name().to_owned(),
    }
}

/// `posrelatI`: a 1-based start position from an integer that may count from the end; the
/// result is at least 1 and may be past the end.
pub(crate) fn start_position(pos: Integer, len: usize) -> usize {
    if pos > 0 {
        usize::try_from(pos).unwrap_or(usize::MAX)
    } else if pos == 0 || pos.unsigned_abs() > len as u64 {
        1
    } else {
        len - pos.unsigned_abs() as usize + 1
    }
}
