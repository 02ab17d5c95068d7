-- GET /ws?token=JWT: verifies the token (crypto.jwt.verify, HS256, the secret from env) and
-- relays the connection to its room's process, starting the room if it has none. Without a
-- valid token the answer is 401 and the connection is not upgraded (no X-WS-Relay header).
local http = require("http")
local json = require("json")
local time = require("time")
local crypto = require("crypto")
local env = require("env")
local logger = require("logger")

local log = logger:named("wippy_chat.connect")

local function refuse(res, status, why)
    res:set_status(status)
    res:write(why .. "\n")
end

-- The process registered as "room:<name>", started if there is none. The room registers
-- the name itself: when two first joins race, one registration wins and the other process
-- exits at once; either way we wait for whichever holds the name. (examples/chat/join.lua's
-- find_room again, with this app's names: an app stands alone, the loader reads no file
-- outside it.)
local function find_room(room)
    local name = "room:" .. room
    local pid = process.registry.lookup(name)
    if pid then
        return pid
    end
    local _, err = process.spawn("wchat:room", "wchat:processes", room)
    if err then
        return nil, err
    end
    for _ = 1, 200 do
        pid = process.registry.lookup(name)
        if pid then
            return pid
        end
        time.sleep("5ms")
    end
    return nil, "room process did not start"
end

local function handler()
    local req = http.request()
    local res = http.response()

    local secret, err = env.get("WSRELAY_APP_JWT_SECRET")
    if not secret then
        log:error("no JWT secret configured", { error = tostring(err) })
        return refuse(res, http.STATUS.INTERNAL_ERROR, "not configured")
    end
    local token = req:query("token")
    if not token or token == "" then
        return refuse(res, http.STATUS.UNAUTHORIZED, "token required")
    end
    -- HS256 only, and the token must carry an expiry.
    local claims, verr = crypto.jwt.verify(token, secret, "HS256", true)
    if not claims then
        log:warn("token refused", { kind = verr:kind() })
        return refuse(res, http.STATUS.UNAUTHORIZED, "invalid token")
    end
    local user, room = claims.sub, claims.room
    if type(user) ~= "string" or user == "" or #user > 32 then
        return refuse(res, http.STATUS.UNAUTHORIZED, "token: sub must name the user")
    end
    if type(room) ~= "string" or not room:match("^[%w_%-]+$") or #room > 32 then
        return refuse(res, http.STATUS.UNAUTHORIZED, "token: room must be 1 to 32 letters, digits, '-' or '_'")
    end

    local pid, ferr = find_room(room)
    if not pid then
        log:error("cannot start room", { room = room, error = tostring(ferr) })
        return refuse(res, http.STATUS.INTERNAL_ERROR, "cannot start room")
    end
    log:info("connecting", { user = user, room = room })
    res:set_header("X-WS-Relay", json.encode({
        target_pid = tostring(pid),
        message_topic = "ws.message",
        metadata = { user = user, room = room },
    }))
end

return { handler = handler }
