local json = require("json")

-- Broadcast: rastreie PIDs de clientes
local clients = {}
-- True in the shared "hub" process (see hub() below): it acknowledges joins.
local is_hub = false

local function broadcast(message)
    local data = json.encode(message)
    for pid, _ in pairs(clients) do
        process.send(pid, "ws.send", {type = "text", data = data})
    end
end

local function handle_message(client_pid, content)
    if type(content) ~= "table" then
        return
    end
    local action = content.action
    if action == "echo" then
        -- Envia mensagem de texto
        process.send(client_pid, "ws.send", {
            type = "text",
            data = json.encode({event = "update", value = 42})
        })
    elseif action == "binary" then
        -- Envia binário
        local binary_content = string.char(0, 1, 2, 255)
        process.send(client_pid, "ws.send", {
            type = "binary",
            data = binary_content
        })
    elseif action == "broadcast" then
        broadcast({event = "broadcast", text = content.text})
    elseif action == "close" then
        -- Fecha conexão
        process.send(client_pid, "ws.close", {
            code = 1000,
            reason = "Sessão encerrada"
        })
    elseif action == "transfer" then
        -- Transferência de conexão
        local websocket_pid = client_pid
        local new_process_pid = process.spawn("app.ws:other", "app:processes")
        process.send(websocket_pid, "ws.control", {
            target_pid = new_process_pid,
            message_topic = "ws.message"
        })
    elseif action == "watch" then
        -- Monitoring the connection from another process
        process.spawn("app.ws:watcher", "app:processes", client_pid)
    elseif action == "hub" then
        -- Test trigger: move this connection to the shared "hub" process (the
        -- same loop, registered by name), so one broadcast reaches several clients.
        local hub_pid = process.registry.lookup("hub")
        if hub_pid then
            process.send(client_pid, "ws.control", {
                target_pid = hub_pid,
                message_topic = "ws.message"
            })
        end
    end
end

local function cleanup(client_pid)
    clients[client_pid] = nil
end

local function handler()
    local inbox = process.inbox()

    while true do
        local msg, ok = inbox:receive()
        if not ok then break end

        local topic = msg:topic()
        local data = msg:payload():data()

        if topic == "ws.join" then
            -- Cliente conectou
            local client_pid = data.client_pid
            clients[client_pid] = true
            if is_hub then
                process.send(client_pid, "ws.send", {type = "text", data = json.encode({event = "hub"})})
            end

        elseif topic == "ws.message" then
            -- Trata mensagem do cliente
            local content = json.decode(data.data)
            handle_message(data.client_pid, content)

        elseif topic == "ws.leave" then
            -- Cliente desconectou. Without client_pid (reason "not_upgraded") the
            -- request that spawned us never became a connection: nobody to clean up.
            if data.client_pid then
                cleanup(data.client_pid)
            end
            -- One process per connection: done when its client is gone.
            if next(clients) == nil and not is_hub then break end
        end
    end
end

-- One shared handler process (service "app.ws:hub") that several connections
-- are moved to with ws.control, so the seed's broadcast reaches all of them.
local function hub()
    is_hub = true
    process.registry.register("hub")
    return handler()
end

return { handler = handler, hub = hub }
