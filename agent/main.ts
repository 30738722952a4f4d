#!/usr/bin/env node
/**
 * The `nodemedic` executable. It loads nothing but the early signal catcher before the rest of the
 * program: with static imports, Node would first load and link the whole module graph (hundreds of
 * files, a good part of a second on a busy node) before any handler could be installed, and a
 * SIGHUP (`systemctl reload`) in that time would kill the daemon. agent/cli.ts, run directly, works
 * too, with its handlers installed only once the graph is linked.
 */
import './early-signals.js';

const { runProgram } = await import('./cli.js');
await runProgram();
