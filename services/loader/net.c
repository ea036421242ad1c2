/* The loader's socket helpers: ipc:// endpoint preparation (folder, stale socket file)
 * and a small ring of peers seen, by routing id. */
#include "services/loader/loader_net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"

int net_seen_check(struct net_seen *s, const struct transport_peer *from, int64_t now_ms, int every_ms) {
    if (!s || !from) return 0;
    int n = s->n < NET_SEEN_MAX ? s->n : NET_SEEN_MAX;
    for (int i = 0; i < n; i++)
        if (s->e[i].len == from->route_len && memcmp(s->e[i].route, from->route, from->route_len) == 0) {
            if (every_ms <= 0 || now_ms - s->e[i].ms < every_ms) return 1;
            s->e[i].ms = now_ms;
            return -1;
        }
    int slot = s->n % NET_SEEN_MAX;
    size_t len = from->route_len <= sizeof s->e[0].route ? from->route_len : sizeof s->e[0].route;
    memcpy(s->e[slot].route, from->route, len);
    s->e[slot].len = len;
    s->e[slot].ms = now_ms;
    s->n++;
    return 0;
}

/* 1 when a process accepts connections on the unix socket at path */
static int net_socket_live(const char *path) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int live = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return live;
}

int net_prepare_endpoint(const char *endpoint) {
    if (!endpoint) return sushi_error(SUSHI_EINVAL, "endpoint: NULL");
    if (strncmp(endpoint, "ipc://", 6) != 0) return SUSHI_OK;
    const char *path = endpoint + 6;
    if (!*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return sushi_error(SUSHI_EINVAL, "endpoint %s: ipc path must be 1..107 bytes", endpoint);
    char dir[128];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        int rc = fs_mkdir_p(dir, 0755);
        if (rc) return rc;
    }
    struct stat st;
    if (lstat(path, &st) != 0) return SUSHI_OK;
    if (!S_ISSOCK(st.st_mode))
        return sushi_error(SUSHI_EINVAL, "endpoint %s: %s exists and is not a socket", endpoint, path);
    if (net_socket_live(path))
        return sushi_error(SUSHI_EINVAL, "endpoint %s: another process is listening there", endpoint);
    if (unlink(path) != 0 && errno != ENOENT)
        return sushi_error(SUSHI_EIO, "endpoint %s: cannot remove the stale socket %s: %s", endpoint, path,
                           strerror(errno));
    log_info("removed the stale socket %s", path);
    return SUSHI_OK;
}

void net_release_endpoint(const char *endpoint) {
    if (endpoint && strncmp(endpoint, "ipc://", 6) == 0 && unlink(endpoint + 6) != 0 && errno != ENOENT)
        log_warn("cannot remove the socket %s: %s", endpoint + 6, strerror(errno));
}
