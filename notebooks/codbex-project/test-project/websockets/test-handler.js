// A JavaScript handler as a codbex project deploys it: an ES module whose onMessage returns the
// reply. ws_notebook runs it unchanged in V8; console output goes to the endpoint's event log.
import { websockets } from "sdk/net";

export function onOpen(from) {
    console.log(`${from} connected (${websockets.getClients().length} open)`);
}

export function onMessage(message, from) {
    console.log(`${from} sent ${message}`);
    return `Hello from WebSocket! [${message}]`;
}

export function onClose(from) {
    console.log(`${from} left`);
}
