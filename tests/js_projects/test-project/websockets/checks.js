import { websockets } from "sdk/net";
import { describe } from "./lib/format.js";

function fail(message) {
    throw new RangeError("no such thing: " + message);
}

export function onMessage(message, from) {
    if (message instanceof Uint8Array) {
        return message.slice().reverse();
    }
    if (message.startsWith("throw ")) {
        fail(message.slice(6));
    }
    if (message === "spin") {
        while (true) {}
    }
    if (message === "context") {
        return [
            describe("method", websockets.getMethod()),
            describe("message", websockets.getMessage()),
            describe("flags", [websockets.isOnOpen(), websockets.isOnMessage(), websockets.isOnError(), websockets.isOnClose()]),
        ].join(" ");
    }
    if (message === "outbound") {
        try {
            websockets.createWebsocket("ws://127.0.0.1:9/elsewhere");
        } catch (error) {
            return "refused: " + error.message;
        }
    }
    if (message.startsWith("outbound ")) {
        const feed = websockets.createWebsocket(message.slice(9), "test-project/websockets/feed-handler");
        feed.send("hi from checks"); // goes out once the connection is open
        return "created " + feed.getId() + " to " + feed.getUri();
    }
    if (message === "feed client") {
        const feed = websockets.getClientByHandler("test-project/websockets/feed-handler");
        const ids = websockets.getClients().map((client) => client.id);
        return feed === null ? "none" : [feed.handler, feed.endpoint, ids.includes(feed.id)].join(" ");
    }
    if (message === "clients") {
        websockets.getClient(from).send("sent through getClient");
        const mine = websockets.getClientByHandler("test-project/websockets/checks");
        return describe("ids", websockets.getClients().map((client) => client.id).sort()) + " " + describe("byHandler", mine && mine.handler);
    }
    if (message === "object") {
        return { from: from, size: message.length };
    }
    return "checked " + message;
}

export function onError(error, from) {
    console.error("Error: " + error);
    const client = websockets.getClient(from); // null for a STOMP client: from is its nickname
    if (client !== null) {
        client.send("error seen: " + error + " | " + websockets.getMethod() + " | " + websockets.getError());
    }
}
