-- Semântica de processo: monitors a WebSocket connection from another process.
local function watch(websocket_pid)
    -- Monitora uma conexão WebSocket de outro processo
    process.monitor(websocket_pid)

    -- Envia mensagem para cliente WebSocket de qualquer processo
    process.send(websocket_pid, "ws.send", {type = "text", data = "hello"})

    local events = process.events()
    while true do
        local event, ok = events:receive()
        if not ok then return end
        if event.kind == process.event.EXIT and event.from == websocket_pid then
            return event.result
        end
    end
end

return { watch = watch }
