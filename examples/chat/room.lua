-- The manager of one chat room: tracks its members and broadcasts.
local json = require("json")

local function run(room)
    -- Only one process may serve a room: a second one (two first joins at
    -- once) finds the name taken and leaves quietly.
    local ok = process.registry.register("room:" .. room)
    if not ok then
        return
    end

    local clients = {} -- client_pid -> true (as in the seed)
    local users = {}   -- client_pid -> user name

    local function members()
        local list = {}
        for pid, _ in pairs(clients) do
            list[#list + 1] = users[pid]
        end
        table.sort(list)
        return list
    end

    local function broadcast(message)
        local data = json.encode(message)
        for pid, _ in pairs(clients) do
            process.send(pid, "ws.send", { type = "text", data = data })
        end
    end

    local function notice(event, user)
        local list = members()
        broadcast({ event = event, user = user, room = room, members = list, count = #list })
    end

    local inbox = process.inbox()
    while true do
        local msg, more = inbox:receive()
        if not more then
            break
        end
        local topic = msg:topic()
        local data = msg:payload():data()

        if topic == "ws.join" then
            local user = (data.metadata and data.metadata.user) or "anonymous"
            clients[data.client_pid] = true
            users[data.client_pid] = user
            notice("join", user)
        elseif topic == "ws.message" then
            local content = json.decode(data.data)
            if clients[data.client_pid] and type(content) == "table"
                and type(content.text) == "string" and content.text ~= "" then
                broadcast({
                    event = "message",
                    user = users[data.client_pid],
                    text = content.text:sub(1, 2000),
                    room = room,
                })
            end
        elseif topic == "ws.leave" then
            local user = users[data.client_pid]
            if clients[data.client_pid] then
                clients[data.client_pid] = nil
                users[data.client_pid] = nil
                notice("leave", user)
            end
        end
        -- ws.heartbeat: nothing to do; the relay keeps the connection alive.
    end
end

return { run = run }
