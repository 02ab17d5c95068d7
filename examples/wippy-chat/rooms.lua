-- One chat room. Its connections are the members of the pg group named after the room:
-- messages go to all of them with one pg broadcast, and presence comes from pg.monitor (a
-- member's join and its leave, also when its connection just closes, are events on the
-- monitor's channel). Client frames arrive on a process.listen channel; the relay's other
-- messages (ws.join, ws.leave) in the inbox.
local json = require("json")
local pg = require("pg")
local logger = require("logger")

local function run(room)
    if not process.registry.register("room:" .. room) then
        return -- another process serves the room already
    end
    local log = logger:named("wippy_chat.room"):with({ room = room })
    local rooms = assert(pg.open("wchat:rooms"))
    local presence = assert(rooms:monitor(room))
    local messages = assert(process.listen("ws.message"))
    local inbox = process.inbox()

    local users = {} -- client pid -> user name, set when the relay hands the connection over
    local count = 0

    local function broadcast(event)
        rooms:broadcast(room, "ws.send", { type = "text", data = json.encode(event) })
    end

    while true do
        local r = channel.select({
            presence:channel():case_receive(),
            messages:case_receive(),
            inbox:case_receive(),
        })
        if r.channel == inbox then
            local msg = r.value
            local data = msg:payload():data()
            if msg:topic() == "ws.join" then
                users[data.client_pid] = (data.metadata and data.metadata.user) or "anonymous"
                local ok, err = rooms:join(room, data.client_pid)
                if not ok then
                    log:warn("join failed", { error = tostring(err) })
                end
            end
            -- ws.leave needs nothing here: the connection's membership ends with it, and
            -- the monitor reports the leave. ws.heartbeat: nothing to do.
        elseif r.channel == messages then
            local data = r.value
            local user = users[data.client_pid]
            local ok, content = pcall(json.decode, data.data)
            if user and ok and type(content) == "table" and type(content.text) == "string"
                and content.text ~= "" then
                broadcast({ event = "message", user = user, room = room,
                            text = content.text:sub(1, 2000) })
            end
        else
            local event = r.value
            if event.kind == "member.joined" then
                for _, pid in ipairs(event.data.PIDs) do
                    count = count + 1
                    log:info("joined", { user = users[pid], count = count })
                    broadcast({ event = "join", user = users[pid], room = room, count = count })
                end
            elseif event.kind == "member.left" then
                for _, pid in ipairs(event.data.PIDs) do
                    count = count - 1
                    local user = users[pid]
                    users[pid] = nil
                    log:info("left", { user = user, count = count })
                    broadcast({ event = "leave", user = user, room = room, count = count })
                end
                -- An empty room ends, and its name with it: the next join starts a new one.
                if count == 0 then
                    break
                end
            elseif event.kind == "overflow" then
                -- Missed changes (a burst beyond the monitor's buffer): recount from the group.
                count = #rooms:get_members(room)
                log:warn("presence events lost", { dropped = event.data.Dropped })
            end
        end
    end
end

return { run = run }
