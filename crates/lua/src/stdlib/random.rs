//! `math.random` and `math.randomseed` with a generator per process and per function call.
//!
//! The C functions share one generator per Lua state, so one handler's `math.randomseed(42)`
//! made the numbers of every later caller on that worker predictable. Here each actor (a
//! process or one function call) gets its own xoshiro256** generator — the algorithm of Lua
//! 5.4, so a seeded sequence is the one C Lua gives — seeded from the operating system on
//! first use. `math.randomseed(x [, y])` seeds only the caller's generator;
//! `math.randomseed()` reseeds it from the operating system. Arguments and errors are Lua
//! 5.4's (`interval is empty`, `wrong number of arguments`, ...).

use std::cell::RefCell;

use mlua::{Integer, Lua, MultiValue, Value as LuaValue};

use super::args::Args;
use super::xoshiro::Xoshiro;
use crate::actor::current;

thread_local! {
    /// For Lua code running outside any actor (none does today): still not shared with one.
    static UNOWNED: RefCell<Option<Xoshiro>> = const { RefCell::new(None) };
}

/// Runs `f` with the caller's generator, seeding it from the operating system on first use.
fn with_rng<T>(f: impl FnOnce(&mut Xoshiro) -> T) -> T {
    let run = |cell: &RefCell<Option<Xoshiro>>| {
        let mut slot = cell.borrow_mut();
        let rng = slot.get_or_insert_with(|| {
            let (n1, n2) = Xoshiro::os_seeds();
            Xoshiro::seeded(n1, n2)
        });
        f(rng)
    };
    match current() {
        Some(actor) => run(actor.rng()),
        None => UNOWNED.with(run),
    }
}

/// `math.random([m [, n]])`: the results, or the error text for the wrapper to raise.
pub(crate) fn random(lua: &Lua, values: &[LuaValue]) -> Result<MultiValue, String> {
    let args = Args::new(lua, values, "math.random");
    let ran = with_rng(Xoshiro::next);
    let (low, up) = match values.len() {
        0 => {
            return Ok(MultiValue::from_iter([LuaValue::Number(Xoshiro::float(
                ran,
            ))]))
        }
        1 => {
            let up = args.integer(1)?;
            if up == 0 {
                return Ok(MultiValue::from_iter([LuaValue::Integer(ran as Integer)]));
            }
            (1, up)
        }
        2 => (args.integer(1)?, args.integer(2)?),
        _ => return Err("wrong number of arguments".to_owned()),
    };
    if low > up {
        return Err(args.error(1, "interval is empty"));
    }
    let span = (up as u64).wrapping_sub(low as u64);
    let picked = with_rng(|rng| rng.project(ran, span));
    Ok(MultiValue::from_iter([LuaValue::Integer(
        picked.wrapping_add(low as u64) as Integer,
    )]))
}

/// `math.randomseed([x [, y]])`: seeds the caller's generator; returns the two seeds.
pub(crate) fn randomseed(lua: &Lua, values: &[LuaValue]) -> Result<MultiValue, String> {
    let args = Args::new(lua, values, "math.randomseed");
    let (n1, n2) = if values.is_empty() {
        Xoshiro::os_seeds()
    } else {
        (args.integer(1)? as u64, args.opt_integer(2, 0)? as u64)
    };
    with_rng(|rng| *rng = Xoshiro::seeded(n1, n2));
    Ok(MultiValue::from_iter([
        LuaValue::Integer(n1 as Integer),
        LuaValue::Integer(n2 as Integer),
    ]))
}
