-- The manager of one chat room: tracks its members and broadcasts to them. The room's
-- connections form a process group (scope app:chat, group = the room's name): one group
-- send encodes a message once for all of them, and a connection leaves the group by itself
-- when it ends.
local json = require("json")
local pg = require("pg")

local function run(room)
    -- Only one process may serve a room: a second one (two first joins at
    -- once) finds the name taken and leaves quietly.
    local ok = process.registry.register("room:" .. room)
    if not ok then
        return
    end

    local group = assert(pg.open("app:chat"))
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
        group:broadcast(room, "ws.send", { type = "text", data = json.encode(message) })
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
            group:join(room, data.client_pid)
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
            -- No client_pid (reason "not_upgraded"): the request that found or
            -- started this room never became a connection; nobody to remove.
            local pid = data.client_pid
            if pid and clients[pid] then
                local user = users[pid]
                clients[pid] = nil
                users[pid] = nil
                -- Still a member if it was transferred away rather than closed.
                group:leave(room, pid)
                notice("leave", user)
            end
            -- An empty room ends, and its name with it: the next join starts a new
            -- one. Otherwise every room name ever asked for (a plain GET is enough)
            -- would keep a process.
            if next(clients) == nil then
                break
            end
        end
        -- ws.heartbeat: nothing to do; the relay keeps the connection alive.
    end
end

return { run = run }
