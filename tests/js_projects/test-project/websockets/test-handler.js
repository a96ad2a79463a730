// An ES module handler, written the way platform projects write theirs: the reply is what
// onMessage returns, and every event is logged with console.
import { websockets } from "sdk/net";

export function onOpen() {
    console.log("test: a client connected (" + websockets.getMethod() + ")");
}

export function onMessage(message, from) {
    console.log(`test: ${from} said ${message}`);
    return `Hello from WebSocket! [${message}]`;
}

export function onError(error) {
    console.error("test: Error: " + error);
}

export function onClose() {
    console.warn("test: a client went away");
}
