// A chat room in the style of the platform's websocket template: whatever a member sends is
// passed on to every client of the room, found with websockets.getClients().
import { websockets } from "sdk/net";

function members() {
    return websockets.getClients().filter((client) => client.uri.endsWith("/chat"));
}

function broadcast(text) {
    for (const member of members()) {
        member.send(text);
    }
}

export function onOpen(from) {
    broadcast(`* ${from} joined (${members().length} here)`);
}

export function onMessage(message, from) {
    if (message === "/who") {
        return JSON.stringify(members().map((member) => member.id).sort());
    }
    broadcast(`${from}: ${message}`);
}

export function onClose(from) {
    console.log(`chat: ${from} left`);
}
