-- GET /ws/{room}?user=NAME: finds (or starts) the room's manager process and
-- hands the WebSocket connection to it.
local http = require("http")
local json = require("json")
local time = require("time")

-- Finds the process registered as "room:<name>", starting one if there is
-- none. The room process registers the name itself: when two first joins race,
-- both may spawn, one registration wins and the other process exits at once.
-- Either way we then wait for whichever process holds the name.
local function find_room(room)
    local name = "room:" .. room
    local pid = process.registry.lookup(name)
    if pid then
        return pid
    end
    local _, err = process.spawn("app:room", "app:processes", room)
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

    local room = req:param("room") or req:query("room") or ""
    local user = req:query("user") or ""
    if not room:match("^[%w_%-]+$") or #room > 32 then
        res:set_status(http.STATUS.BAD_REQUEST)
        res:write("room: 1 to 32 letters, digits, '-' or '_'\n")
        return
    end
    if user == "" or #user > 32 then
        res:set_status(http.STATUS.BAD_REQUEST)
        res:write("user: query parameter of 1 to 32 characters required\n")
        return
    end

    local pid, err = find_room(room)
    if not pid then
        res:set_status(http.STATUS.INTERNAL_ERROR)
        res:write("cannot start room: " .. tostring(err) .. "\n")
        return
    end

    res:set_header("X-WS-Relay", json.encode({
        target_pid = tostring(pid),
        message_topic = "ws.message",
        heartbeat_interval = "30s",
        metadata = {
            user = user,
            room = room,
        },
    }))
end

return { handler = handler }
