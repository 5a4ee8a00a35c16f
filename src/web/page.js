// The tskvm web console page: an xterm.js terminal on the guest's serial
// console and a status panel, over one websocket (protocol: src/web/protocol.ts).
//   binary frames in:  guest console bytes → terminal
//   text frames in:    JSON status / stopped messages → panel
//   binary frames out: what the user types (UTF-8), at most 4096 bytes each
// Plain browser JavaScript on purpose: the project's TypeScript has no DOM types.
'use strict';
(function () {
  const MAX_INPUT_FRAME = 4096; // the server closes the socket on larger frames

  // Serial consoles are 80x24 unless the guest is told otherwise.
  const term = new Terminal({ cols: 80, rows: 24, cursorBlink: true, scrollback: 5000 });
  term.open(document.getElementById('terminal'));
  term.focus();
  // For tests and curious users: window.term.buffer.active holds the screen.
  window.term = term;

  const connection = document.getElementById('connection');
  const setConnection = (text, cls) => {
    connection.textContent = text;
    connection.className = cls;
  };

  const socket = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  socket.binaryType = 'arraybuffer';
  socket.onopen = () => setConnection('connected', 'open');
  socket.onclose = (event) => setConnection(`disconnected${event.reason ? ': ' + event.reason : ''}`, 'closed');
  socket.onmessage = (event) => {
    if (typeof event.data === 'string') showMessage(JSON.parse(event.data));
    else term.write(new Uint8Array(event.data));
  };

  const sendBytes = (bytes) => {
    if (socket.readyState !== WebSocket.OPEN) return;
    for (let i = 0; i < bytes.length; i += MAX_INPUT_FRAME) socket.send(bytes.subarray(i, i + MAX_INPUT_FRAME));
  };
  const encoder = new TextEncoder();
  term.onData((text) => sendBytes(encoder.encode(text)));
  // Some mouse reports are raw bytes (one per char code), not UTF-8 text.
  term.onBinary((text) => sendBytes(Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)));

  const setText = (id, text) => (document.getElementById(id).textContent = text);

  function showMessage(message) {
    if (message.type === 'status') showStatus(message);
    else if (message.type === 'stopped') setText('state', `stopped (${message.kind}: ${message.reason})`);
  }

  function showStatus(status) {
    setText('state', status.state);
    setText('rip', status.vcpu ? status.vcpu.rip : '–');
    setText('cpl', status.vcpu ? String(status.vcpu.cpl) : '–');
    setText('mode', status.vcpu ? status.vcpu.mode : '–');
    setText('total', String(status.total));
    // Rows built with textContent only: names come from the VMM, but a page never trusts markup it did not write.
    const body = document.querySelector('#exits tbody');
    const rows = Object.entries(status.exits).sort((a, b) => b[1] - a[1]);
    body.replaceChildren(
      ...rows.map(([reason, count]) => {
        const row = document.createElement('tr');
        row.dataset.reason = reason;
        const name = document.createElement('td');
        name.textContent = reason;
        const value = document.createElement('td');
        value.className = 'count';
        value.textContent = String(count);
        row.append(name, value);
        return row;
      }),
    );
    const dropped = document.getElementById('dropped');
    dropped.hidden = !status.consoleDropped;
    dropped.textContent = status.consoleDropped ? `console bytes dropped: ${status.consoleDropped}` : '';
  }
})();
