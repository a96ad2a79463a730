// A codbex front end's client side, in Node: SockJS + STOMP, as the platform's test page does it.
//
//   NODE_PATH=.../node_modules node stomp_client.cjs '{"url": "http://127.0.0.1:PORT/stomp", ...}'
//
// Options (JSON): url (the SockJS URL, or a ws:// URL with "raw"), endpoint, from, texts (sent
// one after another to /ws/stomp/ENDPOINT, or /ws/js/ENDPOINT with "shape": "js"), library
// ("stompjs": @stomp/stompjs 7, "stomp.js": stomp.js 2.3.3, as the platform ships), transports
// (sockjs-client's option: ["websocket"], ["xhr-streaming"], ...), raw (a plain WebSocket with the
// STOMP subprotocols), replies (how many to wait for; default: one per text), send (a raw frame
// body to send instead, as [destination, body]), heartbeat (ms, both ways; default: the library's),
// delay (ms between connecting and sending).
//
// Prints one JSON line per event: connected (version, transport), reply (destination, body),
// stomp-error (message, body), closed (code), done; exits 0 once the replies came and the client
// disconnected, 1 on a timeout.

"use strict";

const options = JSON.parse(process.argv[2]);
const SockJS = require("sockjs-client");
const WebSocket = require("ws");

const print = (event, data = {}) => process.stdout.write(JSON.stringify({ event, ...data }) + "\n");
const endpoint = options.endpoint || "echo";
const texts = options.texts || ["hello"];
const wanted = options.replies ?? texts.length;
const destination = `/ws/${options.shape || "stomp"}/${endpoint}`;
const replyQueue = options.shape === "js" ? `/topic/messages/${endpoint}` : `/user/queue/reply/${endpoint}`;
let socket = null;
let replies = 0;

setTimeout(() => {
  print("timeout");
  process.exit(1);
}, options.timeout || 15000);

function openSocket() {
  if (options.raw) {
    socket = new WebSocket(options.url, ["v10.stomp", "v11.stomp", "v12.stomp"]);
  } else {
    socket = new SockJS(options.url, null, options.transports ? { transports: options.transports } : {});
  }
  return socket;
}

const transportName = () => (options.raw ? `raw ${socket.protocol}` : socket.transport);

function received(message, done) {
  print("reply", { destination: message.headers.destination, body: message.body });
  replies += 1;
  if (replies === wanted) done();
}

function modern() {
  const { Client } = require("@stomp/stompjs");
  const client = new Client({
    webSocketFactory: openSocket,
    reconnectDelay: 0,
    connectHeaders: options.connectHeaders || {},
    ...(options.heartbeat ? { heartbeatIncoming: options.heartbeat, heartbeatOutgoing: options.heartbeat } : {}),
    onConnect: (frame) => {
      print("connected", { version: frame.headers.version, transport: transportName() });
      const done = () => client.deactivate().then(() => print("done"));
      client.subscribe(replyQueue, (message) => received(message, done));
      client.subscribe(`/user/queue/errors/${endpoint}`, (message) => received(message, done));
      const send = () => {
        if (options.send) {
          client.publish({ destination: options.send[0], body: options.send[1] });
        }
        for (const text of texts) {
          client.publish({ destination, body: JSON.stringify({ from: options.from || "node", text }) });
        }
        if (wanted === 0) done();
      };
      setTimeout(send, options.delay || 0);
    },
    onStompError: (frame) => print("stomp-error", { message: frame.headers.message, body: frame.body }),
    onWebSocketClose: (event) => {
      print("closed", { code: event.code, reason: event.reason });
      if (replies >= wanted) process.exit(0);
    },
  });
  client.activate();
}

function classic() {
  const { Stomp } = require("stompjs/lib/stomp.js");
  Stomp.setInterval = (interval, f) => setInterval(f, interval);
  Stomp.clearInterval = (id) => clearInterval(id);
  const client = Stomp.over(openSocket());
  client.debug = null;
  client.connect(
    {},
    (frame) => {
      print("connected", { version: frame.headers.version, transport: transportName() });
      const done = () => client.disconnect(() => {
        print("done");
        process.exit(0);
      });
      client.subscribe(replyQueue, (message) => received(message, done));
      client.subscribe(`/user/queue/errors/${endpoint}`, (message) => received(message, done));
      for (const text of texts) {
        client.send(destination, {}, JSON.stringify({ from: options.from || "node", text }));
      }
    },
    (error) => print("stomp-error", { message: String(error.headers ? error.headers.message : error) }),
  );
}

if (options.library === "stomp.js") {
  classic();
} else {
  modern();
}
