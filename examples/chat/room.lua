-- The manager of one chat room on this node: tracks the room's members and broadcasts to
-- them. The room's connections form a process group (scope app:chat, group = the room's
-- name): one group send encodes a message once for all of them, and a connection leaves
-- the group by itself when it ends.
--
-- In a cluster every node with clients in the room has a manager of its own (names without
-- "global:" are per node), and the group spans the nodes: a message reaches every member,
-- wherever it is. The managers of a room form a group too ("managers:<room>") and tell each
-- other the users of their node (a "chat.roster" message on each change), so that every
-- manager's member list covers the whole room. The lists are eventually consistent: a
-- manager that hears of a change in another one's users, or loses another one (its room
-- emptied, or its node was lost), sends the room a "members" notice; a client's list is
-- that of the latest notice. Each manager also shares its users again every few seconds,
-- so a roster lost on the way (a node restarting, a cut between NATS servers) is made good
-- by the next one.
local json = require("json")
local pg = require("pg")
local time = require("time")

-- How often a manager shares its users with the room's other managers unasked.
local RESHARE = "5s"

-- Whether two rosters (sorted lists of names) list the same users.
local function same(a, b)
    if #a ~= #b then
        return false
    end
    for i = 1, #a do
        if a[i] ~= b[i] then
            return false
        end
    end
    return true
end

local function run(room)
    -- Only one process may serve a room on a node: a second one (two first joins at
    -- once) finds the name taken and leaves quietly.
    local ok = process.registry.register("room:" .. room)
    if not ok then
        return
    end

    local group = assert(pg.open("app:chat"))
    local managers = "managers:" .. room -- room names have no ':', so never a room's group
    assert(group:join(managers))
    local peers = assert(group:monitor(managers))
    local me = process.pid()

    local clients = {} -- client_pid -> user name, this node's members
    local rosters = {} -- manager pid -> user names, the other nodes' members

    local function members()
        local list = {}
        for _, user in pairs(clients) do
            list[#list + 1] = user
        end
        for _, users in pairs(rosters) do
            for _, user in ipairs(users) do
                list[#list + 1] = user
            end
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

    -- This node's users (sorted, so that two rosters compare), to one manager or (no `to`)
    -- to all of them.
    local function share(to)
        local users = {}
        for _, user in pairs(clients) do
            users[#users + 1] = user
        end
        table.sort(users)
        local roster = { users = users }
        if to then
            process.send(to, "chat.roster", roster)
        else
            group:broadcast(managers, "chat.roster", roster)
        end
    end

    local function on_relay(topic, data)
        if topic == "ws.join" then
            local user = (data.metadata and data.metadata.user) or "anonymous"
            clients[data.client_pid] = user
            group:join(room, data.client_pid)
            share()
            notice("join", user)
        elseif topic == "ws.message" then
            local content = json.decode(data.data)
            if clients[data.client_pid] and type(content) == "table"
                and type(content.text) == "string" and content.text ~= "" then
                broadcast({
                    event = "message",
                    user = clients[data.client_pid],
                    text = content.text:sub(1, 2000),
                    room = room,
                })
            end
        elseif topic == "ws.leave" then
            -- No client_pid (reason "not_upgraded"): the request that found or
            -- started this room never became a connection; nobody to remove.
            local pid = data.client_pid
            local user = pid and clients[pid]
            if user then
                clients[pid] = nil
                -- Still a member if it was transferred away rather than closed.
                group:leave(room, pid)
                share()
                notice("leave", user)
            end
        end
        -- ws.heartbeat: nothing to do; the relay keeps the connection alive.
    end

    local function on_roster(from, roster)
        if from == me then
            return -- our own share, through the managers' group
        end
        local users = roster.users or {}
        local known = rosters[from]
        rosters[from] = users
        if known == nil then
            share(from) -- it may not have had ours either
        end
        -- Every change, not only the first roster: a list sent before this one arrived
        -- (ours, or the other manager's own notice) may have crossed it.
        if not same(known or {}, users) then
            notice("members")
        end
    end

    local function on_peers(event)
        for _, pid in ipairs(event.data.PIDs or {}) do
            if pid ~= me then
                if event.kind == "member.joined" then
                    share(pid) -- a new manager learns this node's users
                elseif rosters[pid] then
                    rosters[pid] = nil
                    notice("members")
                end
            end
        end
    end

    local inbox = process.inbox()
    local again = time.after(RESHARE)
    while true do
        local r = channel.select({
            inbox:case_receive(),
            peers:channel():case_receive(),
            again:case_receive(),
        })
        if r.channel == again then
            share()
            again = time.after(RESHARE)
        elseif not r.ok then
            break
        elseif r.channel == inbox then
            local msg = r.value
            if msg:topic() == "chat.roster" then
                on_roster(msg:from(), msg:payload():data())
            else
                on_relay(msg:topic(), msg:payload():data())
                -- An empty room ends, and its name with it: the next join starts a new
                -- one. Otherwise every room name ever asked for (a plain GET is enough)
                -- would keep a process.
                if msg:topic() == "ws.leave" and next(clients) == nil then
                    break
                end
            end
        elseif r.value.kind == "overflow" then
            -- Changes of the managers were missed: forget the other nodes' users; their
            -- managers' next shares (RESHARE) bring back those still there.
            rosters = {}
        else
            on_peers(r.value)
        end
    end
end

return { run = run }
