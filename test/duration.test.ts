import t from 'tap';
import { formatDuration, parseDuration } from '../platform/duration.js';

t.test('parses Go-style durations', async (t) => {
  const cases: [string, number][] = [
    ['500ms', 500],
    ['10s', 10_000],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['0s', 0],
  ];
  for (const [text, ms] of cases) t.equal(parseDuration(text), ms, text);
});

t.test('rejects durations without a unit, negative or malformed', async (t) => {
  for (const bad of ['10', '-5s', '5 m', '', 'm', '5x', '1h-30m', ' 5s']) {
    t.throws(() => parseDuration(bad), /not a duration/, JSON.stringify(bad));
  }
});

t.test('formats durations for messages', async (t) => {
  t.equal(formatDuration(250), '250ms');
  t.equal(formatDuration(1500), '1.5s');
  t.equal(formatDuration(205_000), '3m25s');
  t.equal(formatDuration(3_600_000), '1h');
  t.equal(formatDuration(5_400_000), '1h30m');
});
