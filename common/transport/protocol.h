/* How sushi's stages talk: sockets, message kinds, meta keys and the delivery rules that
 * give exactly-once, in-order application of every batch (DESIGN.md "Delivery
 * guarantees"). Every service follows this file; tests check it from outside.
 *
 * Sockets of the distill pipeline (endpoints come from the run config's `endpoints`):
 *
 *   loader   ROUTER bind    endpoints.loader   teachers and the trainer connect here
 *   teacher  DEALER connect endpoints.loader   <- batch; -> hello, heartbeat (credits)
 *            DEALER connect endpoints.trainer  -> scored, hello, heartbeat
 *   trainer  ROUTER bind    endpoints.trainer  <- scored (from teacher replicas)
 *            DEALER connect endpoints.loader   -> hello, heartbeat, ack; <- batch (direct
 *                                              mode: no teacher, the trainer is the worker)
 *            PUB    bind    endpoints.events   -> metrics, checkpoint (eval subscribes)
 *   eval     SUB    connect endpoints.events   <- checkpoint announcements
 *   every    PUB    connect $SUSHI_PUBLISH     -> hello, heartbeat, metrics, eval,
 *   stage                                         checkpoint (monitor, supervisor); stage.h
 *
 * Messages (wire.h; id = batch id = epoch << 40 | index, see common/data/data.h):
 *
 *   hello      peer -> loader at start (and again whenever the loader sends it a hello:
 *              that is how a restarted loader re-learns its peers). meta:
 *                role    "worker" (teacher replica) | "trainer"
 *                credit  batches this peer can take now (workers, and the trainer in
 *                        direct mode): its free input slots
 *                next    (trainer) the next batch id it will apply = its checkpoint's
 *                        cursor; the loader REWINDS to it: drops its in-flight table and
 *                        sends from `next` again
 *                window  (trainer) its reorder window W
 *                direct  (trainer) 1 when no teacher is in the pipeline: send batches to it
 *   hello      loader -> peer it does not know (any message from an unknown routing id,
 *              e.g. after the loader restarted): "say hello again"; meta.reset = 1.
 *   heartbeat  every heartbeat_ms both ways on every DEALER/ROUTER pair. From a worker it
 *              may carry meta.credit = n (slots freed since the last grant). From the
 *              trainer it always carries meta.next (next id to apply) and meta.window, so
 *              a loader that missed the hello still learns where to send from.
 *   batch      loader -> worker: tensors tokens, targets, doc_ids, positions [B,T] i32,
 *              sample_ids [B] u64, answer_mask [B,T] u8; id, epoch, cursor (= index within
 *              the epoch); meta.next = the id that follows this one (data_next_id), so the
 *              trainer can step across epoch ends without the loader.
 *   scored     teacher -> trainer: the batch's tensors and meta passed through, plus
 *              topk_ids [B,T,K] i32, topk_logprobs [B,T,K] f32, tail_logprob [B,T] f32;
 *              meta.temperature, meta.topk, meta.teacher (replica name). Each document
 *              segment of a row (doc_ids) is scored as its own sequence from position 0.
 *   ack        trainer -> loader: id = N, "every batch before N is in a durable
 *              checkpoint" (cumulative), sent only after the checkpoint is fsynced.
 *   rewind     trainer -> loader: id = N, same effect as a trainer hello's `next` (used
 *              by tools; the trainer itself says hello).
 *   metrics / checkpoint / eval: published (PUB), never sent point to point; see below.
 *
 * Delivery rules:
 *   - Flow control. A worker's credit bounds what it holds (the loader sends to a worker
 *     only while it has credit; the worker returns a credit on a heartbeat when a batch
 *     has left it). The trainer's (next, window) bounds everything in flight: the loader
 *     sends only ids among the W ids starting at `next`. Queues are bounded everywhere.
 *   - The loader keeps only an in-flight table (id -> worker, time sent), never batches:
 *     it regenerates any batch from its id (data_batch). An entry whose id is below the
 *     trainer's latest `next` is done. An entry is re-sent (to any worker with credit)
 *     when resend_after_ms passes, or at once when its worker's heartbeats stop
 *     (dead_after_ms).
 *   - The trainer applies batches strictly in id order: it holds early arrivals (at most
 *     W) and drops an arrival that is older than `next` (already applied), already held
 *     (duplicate), or beyond its window (it will be re-sent). Each applied batch
 *     advances `next` to that batch's meta.next.
 *   - Checkpoints hold weights, optimizer state, RNG state and `next`; they are written
 *     atomically; an ack follows each durable one. A restarted trainer loads its last
 *     checkpoint and says hello with its `next`; the loader rewinds.
 *   - The trainer appends to RUN/trainer/applied.tsv one line per applied batch:
 *     "STEP<TAB>BATCH_ID<TAB>SAMPLE_ID,SAMPLE_ID,..." and to losses.tsv one line per
 *     optimizer step "STEP<TAB>LOSS" (%.9g); both are truncated back to the checkpoint's
 *     length on resume, so after any crash and resume they read as one clean run.
 *     With dynamic loss scaling a step whose gradient norm is not finite is skipped:
 *     its batches are applied (consumed, acked) under the step number the retry gets,
 *     so they share that STEP in applied.tsv, and losses.tsv has no line for it.
 *
 * Published messages (PUB, stage = the sender's name, e.g. "trainer", "teacher.1"):
 *   hello/heartbeat  meta {pid} (stage.c does this; the supervisor watches them)
 *   metrics  trainer: step, total_steps, loss, lr, grad_norm, tokens_per_s, data_stall_s
 *            (cumulative seconds waiting for data once the first batch arrived),
 *            startup_wait_s (waiting for the first batch), elapsed_s (since the
 *            trainer started its loop), step_time_s, queue_reorder, loss_scale
 *            (1 when off), skipped_steps (non-finite steps skipped so far);
 *            loader: sent, resent, inflight, acked; teacher: scored, tokens_per_s,
 *            queue_input; any stage: event = "end" when a run is complete.
 *   checkpoint  trainer: id = next batch id; meta {path, step, arch ("llama"|"deepseek")}
 *   eval     eval: id = step; meta {step, checkpoint, loss, ppl, top1_agreement,
 *            teacher_ppl, needle_accuracy, ...}
 *
 * Malformed messages: transport_recv drops and counts them (logged once per peer); a
 * well-formed message that breaks this protocol (unknown role, missing tensor, shape not
 * matching B,T, wrong kind for the socket) is logged once per peer with the cause,
 * counted in the stage's `bad_messages` metric, and dropped. Nothing crashes.
 */
#ifndef SUSHI_PROTOCOL_H
#define SUSHI_PROTOCOL_H

#define PROTO_ROLE_WORKER "worker"
#define PROTO_ROLE_TRAINER "trainer"
#define PROTO_HEARTBEAT_MS 500       /* default heartbeat interval */
#define PROTO_DEAD_AFTER_MS 5000     /* default: a peer silent this long is dead */
#define PROTO_RESEND_AFTER_MS 60000  /* default: re-send an unapplied batch after this */
#define PROTO_WINDOW 8               /* default trainer reorder window */
#define PROTO_WORKER_CREDIT 2        /* default batches a teacher replica holds */

#endif
