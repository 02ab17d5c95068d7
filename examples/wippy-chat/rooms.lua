-- Every room of the chat, in one process. A room is a pg group of its connections: a message
-- reaches a room's members with one pg broadcast, and presence comes from the scope's event
-- stream (g:events()): a member's join and its leave, also when its connection just closes.
-- Client frames arrive on a process.listen channel; the relay's other messages (ws.join,
-- ws.leave, ws.heartbeat) in the inbox. The process is a service: started with the app,
-- registered as "rooms", restarted if it fails (its connections close with it).
local json = require("json")
local pg = require("pg")
local logger = require("logger")

local function run()
    assert(process.registry.register("rooms"))
    local log = logger:named("wippy_chat.rooms")
    local rooms = assert(pg.open("wchat:rooms"))
    local events = assert(rooms:events())
    local messages = assert(process.listen("ws.message"))
    local inbox = process.inbox()

    -- client pid -> {user =, room =}: from the relay's ws.join until the group's member.left.
    local members = {}
    local counts = {} -- room -> members announced

    local function announce(room, event)
        event.room = room
        rooms:broadcast(room, "ws.send", { type = "text", data = json.encode(event) })
    end

    local function on_join(data)
        local meta = data.metadata or {}
        members[data.client_pid] = { user = meta.user or "anonymous", room = meta.room }
        local ok, err = rooms:join(meta.room, data.client_pid)
        if not ok then
            members[data.client_pid] = nil
            log:warn("join failed", { room = meta.room, error = tostring(err) })
        end
    end

    local function on_frame(data)
        local member = members[data.client_pid]
        local ok, content = pcall(json.decode, data.data)
        if member and ok and type(content) == "table" and type(content.text) == "string"
            and content.text ~= "" then
            announce(member.room, { event = "message", user = member.user,
                                    text = content.text:sub(1, 2000) })
        end
    end

    local function on_presence(event)
        local room = event.path
        local joined = event.kind == "member.joined"
        for _, pid in ipairs(event.data.PIDs) do
            local member = members[pid] or { user = "anonymous" }
            local count = (counts[room] or 0) + (joined and 1 or -1)
            -- An empty room keeps nothing here: the next join starts it again.
            counts[room] = count > 0 and count or nil
            if not joined then
                members[pid] = nil
            end
            log:info(joined and "joined" or "left", { room = room, user = member.user, count = count })
            announce(room, { event = joined and "join" or "leave", user = member.user, count = count })
        end
    end

    -- Missed changes (a burst beyond the subscription's buffer): count again from the groups,
    -- and forget the members that are in none.
    local function recount(dropped)
        log:warn("presence events lost", { dropped = dropped })
        local present = {}
        counts = {}
        for _, room in ipairs(rooms:which_groups() or {}) do
            local pids = rooms:get_members(room) or {}
            counts[room] = #pids
            for _, pid in ipairs(pids) do
                present[pid] = true
            end
        end
        for pid in pairs(members) do
            if not present[pid] then
                members[pid] = nil
            end
        end
    end

    while true do
        local r = channel.select({
            events:channel():case_receive(),
            messages:case_receive(),
            inbox:case_receive(),
        })
        if r.channel == messages then
            on_frame(r.value)
        elseif r.channel == inbox then
            local msg = r.value
            -- ws.leave and ws.heartbeat need nothing: a connection's membership ends with it,
            -- and the group's event reports the leave.
            if msg:topic() == "ws.join" then
                on_join(msg:payload():data())
            end
        elseif r.value.kind == "overflow" then
            recount(r.value.data.Dropped)
        else
            on_presence(r.value)
        end
    end
end

return { run = run }
