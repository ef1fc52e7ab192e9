// Following a job's Server-Sent Events. EventSource reconnects by itself after a dropped connection and
// sends the last `id:` it saw as Last-Event-ID, so the service resumes right after it: nothing is
// missed and nothing repeats. The stream is closed here once the job's last event arrived (else
// EventSource would reconnect to a stream that has ended).

import { eventsUrl } from "./api.js";
import { EVENT_TYPES, endsJob } from "./job-state.js";

/**
 * Follow `jobId`: `onEvent(event)` for each event, `onState({state, connections})` as the connection
 * changes (state: connecting, live, reconnecting, ended, closed). Returns a function that stops.
 */
export function followJob(jobId, { onEvent, onState }) {
  const source = new EventSource(eventsUrl(jobId));
  let connections = 0;
  let ended = false;
  const report = (state) => onState({ state, connections });
  report("connecting");
  source.addEventListener("open", () => {
    connections += 1;
    report("live");
  });
  source.addEventListener("error", () => {
    if (!ended) report(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  });
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      event.id ??= message.lastEventId;
      onEvent(event);
      if (endsJob(type)) {
        ended = true;
        source.close();
        report("ended");
      }
    });
  }
  return () => {
    ended = true;
    source.close();
  };
}
