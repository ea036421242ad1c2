/* The trainer's records in RUN/trainer/ (protocol.h): applied.tsv, one line per applied
 * batch "STEP<TAB>BATCH_ID<TAB>SAMPLE_ID,SAMPLE_ID,...", and losses.tsv, one line per
 * optimizer step "STEP<TAB>LOSS" (%.9g). A checkpoint stores both files' lengths; on
 * resume they are truncated back to them, so after a crash they read as one clean run. */
#ifndef SUSHI_TRAINER_RECORDS_H
#define SUSHI_TRAINER_RECORDS_H

#include <stdint.h>
#include <stdio.h>

struct records {
    char applied_path[1024], losses_path[1024];
    FILE *applied, *losses;
};

/* Creates dir (RUN/trainer) and opens both files for appending. With keep = 0 they are
 * emptied (a fresh run); with keep = 1 they are truncated to applied_bytes/losses_bytes
 * (a resumed run), which must not exceed their current sizes. */
int records_open(struct records *r, const char *dir, int keep, long long applied_bytes,
                 long long losses_bytes);
void records_close(struct records *r);
int records_applied(struct records *r, int step, uint64_t batch_id, const uint64_t *sample_ids, int n);
int records_loss(struct records *r, int step, float loss);
/* Flushes and fsyncs both files; their lengths go to *applied_bytes / *losses_bytes. */
int records_sync(struct records *r, long long *applied_bytes, long long *losses_bytes);

#endif
