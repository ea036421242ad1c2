// libs: core
/* sushi: the one command a user types. `sushi CMD ARGS` runs the program sushi-CMD
 * installed beside this binary (git-style); a few names are aliases:
 *   sushi score ...     -> sushi-teacher score ...
 *   sushi generate ...  -> sushi-teacher generate ...
 *   sushi train ...     -> sushi-trainer ...
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct alias { const char *name, *program, *first_arg; };
static const struct alias aliases[] = {
    {"score", "teacher", "score"},
    {"generate", "teacher", "generate"},
    {"train", "trainer", NULL},
};

static const struct { const char *name, *what; } commands[] = {
    {"run", "run a pipeline (pipelines/*.yaml): starts and supervises its stages"},
    {"loader", "data loader stage; --dump N DIR writes batches as safetensors"},
    {"teacher", "teacher stage and standalone scoring/generation service"},
    {"score", "score token ids with a teacher checkpoint (sushi-teacher score)"},
    {"generate", "generate text with a teacher checkpoint (sushi-teacher generate)"},
    {"trainer", "student training stage (alias: train)"},
    {"eval", "evaluation stage: perplexity, agreement, passkey grid"},
    {"monitor", "metrics monitor: terminal view, /metrics, JSONL"},
    {"tokenize", "encode or decode text with a HuggingFace tokenizer.json"},
    {"inspect", "describe a checkpoint directory as JSON"},
};

static int self_dir(char *out, size_t n) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return -1;
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = 0;
    snprintf(out, n, "%s", exe);
    return 0;
}

static void usage(FILE *f, const char *dir) {
    fprintf(f, "usage: sushi COMMAND [ARGS...]   (sushi COMMAND --help for a command's options)\n\n"
               "sushi distils a large DeepSeek-architecture teacher into a small student.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char path[PATH_MAX + 64];
        const char *prog = commands[i].name;
        for (size_t a = 0; a < sizeof aliases / sizeof aliases[0]; a++)
            if (!strcmp(prog, aliases[a].name)) prog = aliases[a].program;
        snprintf(path, sizeof path, "%s/sushi-%s", dir, prog);
        int present = access(path, X_OK) == 0;
        fprintf(f, "  %-10s %s%s\n", commands[i].name, commands[i].what,
                present ? "" : " [not built]");
    }
}

int main(int argc, char **argv) {
    char dir[PATH_MAX];
    if (self_dir(dir, sizeof dir)) {
        fprintf(stderr, "sushi: cannot find my own location (/proc/self/exe): %s\n", strerror(errno));
        return 2;
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout, dir);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1], *program = cmd, *first = NULL;
    for (size_t a = 0; a < sizeof aliases / sizeof aliases[0]; a++)
        if (!strcmp(cmd, aliases[a].name)) { program = aliases[a].program; first = aliases[a].first_arg; }
    if (strchr(program, '/') || program[0] == '.' || program[0] == '-') {
        fprintf(stderr, "sushi: '%s' is not a command (see sushi --help)\n", cmd);
        return 2;
    }
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/sushi-%s", dir, program);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "sushi: '%s' is not a sushi command (no %s; see sushi --help)\n", cmd, path);
        return 2;
    }
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) return 2;
    int n = 0;
    char name[PATH_MAX + 64];
    snprintf(name, sizeof name, "sushi-%s", program);
    args[n++] = name;
    if (first) args[n++] = (char *)first;
    for (int i = 2; i < argc; i++) args[n++] = argv[i];
    args[n] = NULL;
    execv(path, args);
    fprintf(stderr, "sushi: cannot run %s: %s\n", path, strerror(errno));
    free(args);
    return 2;
}
