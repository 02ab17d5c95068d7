-- GET /ws?token=JWT: verifies the token (crypto.jwt.verify, HS256, the secret from env) and
-- relays the connection to the process that serves every room (the "rooms" service), with
-- the user and the room as the connection's metadata. Without a valid token the answer is
-- 401 and the connection is not upgraded (no X-WS-Relay header).
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

-- The rooms service. It registers its name when its code starts to run, which can be just
-- after the listener opens, and it is restarted a second after a failure: a request that
-- comes in between waits for it, two seconds at most, rather than failing.
local function rooms_service()
    local pid = process.registry.lookup("rooms")
    local waited = 0
    while not pid and waited < 2000 do
        time.sleep("50ms")
        waited = waited + 50
        pid = process.registry.lookup("rooms")
    end
    return pid
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

    local pid = rooms_service()
    if not pid then
        log:error("the rooms service is not running")
        return refuse(res, http.STATUS.SERVICE_UNAVAILABLE, "chat not running, try again")
    end
    log:info("connecting", { user = user, room = room })
    res:set_header("X-WS-Relay", json.encode({
        target_pid = tostring(pid),
        message_topic = "ws.message",
        metadata = { user = user, room = room },
    }))
end

return { handler = handler }
