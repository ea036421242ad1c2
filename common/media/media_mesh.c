/* Meshes: assimp import (OBJ, PLY, STL, glTF and the rest of its formats), node
 * transforms baked in, polygons split into fans, points and lines ignored. The mesh is centred on its bounding-box centre
 * and scaled so its farthest vertex lies on the unit sphere; P points are drawn on the
 * surface with probability proportional to triangle area (uniform inside a triangle,
 * seeded splitmix64), each with its triangle's normal (right-hand winding).
 * assimp's C API keeps the last import error in a global, so imports are serialised. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <assimp/cimport.h>
#include <assimp/postprocess.h>
#include <assimp/scene.h>

#include "common/core/log.h"
#include "common/media/media_internal.h"

#define MESH_MAX_TRIANGLES (1 << 26)

static pthread_mutex_t g_ai_lock = PTHREAD_MUTEX_INITIALIZER;

void media_mesh_defaults(struct media_mesh_opts *o) { *o = (struct media_mesh_opts){.points = 2048, .seed = 0}; }

void media_points_free(struct media_points *p)
{
    if (!p) return;
    free(p->data);
    memset(p, 0, sizeof *p);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) { return (splitmix64(s) >> 11) * 0x1.0p-53; }

/* the scene's triangles as [T, 3, 3] doubles: polygons as fans (v0, vi, vi+1), points
 * and lines skipped */
static int mesh_triangles(const struct aiScene *sc, const char *path, double **tri, size_t *ntri)
{
    size_t n = 0;
    for (unsigned m = 0; m < sc->mNumMeshes; m++)
        for (unsigned f = 0; f < sc->mMeshes[m]->mNumFaces; f++) {
            unsigned k = sc->mMeshes[m]->mFaces[f].mNumIndices;
            n += k >= 3 ? k - 2 : 0;
        }
    if (n == 0) return sushi_error(SUSHI_EFORMAT, "%s: mesh has no triangles", path);
    if (n > MESH_MAX_TRIANGLES) return sushi_error(SUSHI_EUNSUPPORTED, "%s: %zu triangles is too many", path, n);
    double *t = malloc(sizeof(double) * 9 * n);
    if (!t) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    size_t k = 0;   /* values written */
    for (unsigned m = 0; m < sc->mNumMeshes; m++) {
        const struct aiMesh *mesh = sc->mMeshes[m];
        for (unsigned f = 0; f < mesh->mNumFaces; f++) {
            const struct aiFace *face = &mesh->mFaces[f];
            for (unsigned fan = 1; fan + 1 < face->mNumIndices; fan++) {
                const unsigned corner[3] = {face->mIndices[0], face->mIndices[fan], face->mIndices[fan + 1]};
                for (int j = 0; j < 3; j++) {
                    unsigned vi = corner[j];
                    if (vi >= mesh->mNumVertices || !mesh->mVertices) {
                        free(t);
                        return sushi_error(SUSHI_EFORMAT, "%s: face %u of mesh %u uses vertex %u of %u", path, f, m,
                                           vi, mesh->mNumVertices);
                    }
                    struct aiVector3D v = mesh->mVertices[vi];
                    if (!isfinite(v.x) || !isfinite(v.y) || !isfinite(v.z)) {
                        free(t);
                        return sushi_error(SUSHI_EFORMAT, "%s: vertex %u of mesh %u is not finite", path, vi, m);
                    }
                    t[k++] = v.x;
                    t[k++] = v.y;
                    t[k++] = v.z;
                }
            }
        }
    }
    *tri = t;
    *ntri = n;
    return 0;
}

static void cross3(const double *a, const double *b, const double *c, double *n)
{
    double u[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]}, v[3] = {c[0] - a[0], c[1] - a[1], c[2] - a[2]};
    n[0] = u[1] * v[2] - u[2] * v[1];
    n[1] = u[2] * v[0] - u[0] * v[2];
    n[2] = u[0] * v[1] - u[1] * v[0];
}

/* centre + scale in place, then sample */
static int mesh_sample(double *t, size_t n, const char *path, const struct media_mesh_opts *o, float *out)
{
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (size_t i = 0; i < n * 3; i++)
        for (int d = 0; d < 3; d++) {
            lo[d] = fmin(lo[d], t[i * 3 + d]);
            hi[d] = fmax(hi[d], t[i * 3 + d]);
        }
    double c[3] = {(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2}, r2 = 0;
    for (size_t i = 0; i < n * 3; i++) {
        double s = 0;
        for (int d = 0; d < 3; d++) s += (t[i * 3 + d] - c[d]) * (t[i * 3 + d] - c[d]);
        r2 = fmax(r2, s);
    }
    if (!(r2 > 0) || !isfinite(r2)) return sushi_error(SUSHI_EFORMAT, "%s: mesh has no extent", path);
    double inv = 1.0 / sqrt(r2);
    for (size_t i = 0; i < n * 3; i++)
        for (int d = 0; d < 3; d++) t[i * 3 + d] = (t[i * 3 + d] - c[d]) * inv;
    double *cdf = malloc(sizeof(double) * n);
    if (!cdf) return sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        double nv[3];
        cross3(t + i * 9, t + i * 9 + 3, t + i * 9 + 6, nv);
        total += 0.5 * sqrt(nv[0] * nv[0] + nv[1] * nv[1] + nv[2] * nv[2]);
        cdf[i] = total;
    }
    if (!(total > 0)) {
        free(cdf);
        return sushi_error(SUSHI_EFORMAT, "%s: mesh surface has zero area", path);
    }
    uint64_t s = o->seed;
    for (int p = 0; p < o->points; p++) {
        double u = uniform01(&s) * total;
        size_t a = 0, b = n - 1;   /* first triangle with cdf > u */
        while (a < b) {
            size_t mid = (a + b) / 2;
            if (cdf[mid] > u) b = mid;
            else a = mid + 1;
        }
        const double *v = t + a * 9;
        double r1 = sqrt(uniform01(&s)), r2s = uniform01(&s);
        double w0 = 1 - r1, w1 = r1 * (1 - r2s), w2 = r1 * r2s, nv[3];
        cross3(v, v + 3, v + 6, nv);
        double len = sqrt(nv[0] * nv[0] + nv[1] * nv[1] + nv[2] * nv[2]);
        for (int d = 0; d < 3; d++) {
            out[p * 6 + d] = (float)(w0 * v[d] + w1 * v[3 + d] + w2 * v[6 + d]);
            out[p * 6 + 3 + d] = (float)(nv[d] / len);   /* len > 0: zero-area triangles are never drawn */
        }
    }
    free(cdf);
    return 0;
}

/* assimp 5.2's PLY reader loops forever on some malformed headers (found by fuzzing),
 * so a PLY header must pass this strict check of its grammar first. */
static int ply_is_type(const char *t)
{
    static const char *types[] = {"char", "uchar", "short", "ushort", "int", "uint", "float", "double",
                                  "int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (!strcmp(t, types[i])) return 1;
    return 0;
}

static int ply_header_line(char *line, int first)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
    if (first) return !strcmp(line, "ply");
    if (!strncmp(line, "comment", 7) || !strncmp(line, "obj_info", 8)) return 1;
    char *tok[6], *save = NULL;
    int nt = 0;
    for (char *t = strtok_r(line, " ", &save); t && nt < 6; t = strtok_r(NULL, " ", &save)) tok[nt++] = t;
    if (nt == 3 && !strcmp(tok[0], "format"))
        return (!strcmp(tok[1], "ascii") || !strcmp(tok[1], "binary_little_endian") ||
                !strcmp(tok[1], "binary_big_endian")) && !strcmp(tok[2], "1.0");
    if (nt == 3 && !strcmp(tok[0], "element"))
        return strspn(tok[2], "0123456789") == strlen(tok[2]) && strlen(tok[2]) <= 9;
    if (nt == 3 && !strcmp(tok[0], "property")) return ply_is_type(tok[1]);
    if (nt == 5 && !strcmp(tok[0], "property") && !strcmp(tok[1], "list"))
        return ply_is_type(tok[2]) && ply_is_type(tok[3]);
    return nt == 1 && !strcmp(tok[0], "end_header") ? 2 : 0;
}

/* assimp hands a file to its PLY reader by the .ply extension, or by content when the
 * reader its extension names fails (a file starting with "ply"), or when no reader
 * claims the extension and a "ply" token is in its first 200 bytes: each of these makes
 * the strict check apply (an .obj mentioning "apply" in a comment goes to the OBJ reader) */
static int ply_claims(const char *path, FILE *f)
{
    static const char *other[] = {".obj", ".stl", ".gltf", ".glb", ".off", ".fbx", ".dae", ".3ds"};
    const char *dot = strrchr(path, '.');
    if (dot && !strcasecmp(dot, ".ply")) return 1;
    char head[256];
    size_t n = fread(head, 1, sizeof head - 1, f);
    head[n] = 0;
    rewind(f);
    if (n >= 3 && !strncmp(head, "ply", 3)) return 1;
    for (size_t i = 0; dot && i < sizeof other / sizeof *other; i++)
        if (!strcasecmp(dot, other[i])) return 0;
    for (size_t i = 0; i + 3 <= n; i++)
        if (!strncasecmp(head + i, "ply", 3)) return 1;
    return 0;
}

static int ply_header_check(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return sushi_error(SUSHI_ENOTFOUND, "%s: cannot open mesh", path);
    char line[1024];
    int rc = 0, nline = 0, done = 0, claimed = ply_claims(path, f);
    while (!rc && !done && fgets(line, sizeof line, f)) {
        if (nline == 0 && !claimed) break;   /* not PLY by name or content: assimp decides */
        int ok = strchr(line, '\n') ? ply_header_line(line, nline == 0) : 0;
        if (!ok || ++nline > 1000) rc = sushi_error(SUSHI_EFORMAT, "%s: malformed PLY header at line %d", path, nline + 1);
        done = ok == 2;
    }
    if (!rc && claimed && !done) rc = sushi_error(SUSHI_EFORMAT, "%s: PLY header without end_header", path);
    fclose(f);
    return rc;
}

static int mesh_import(const char *path, const struct aiScene **scene)
{
    if (access(path, R_OK) != 0) return sushi_error(SUSHI_ENOTFOUND, "%s: cannot open mesh", path);
    int rc = ply_header_check(path);
    if (rc) return rc;
    /* no aiProcess_Triangulate: it aborts (ai_assert) on some malformed faces */
    unsigned flags = aiProcess_PreTransformVertices | aiProcess_ValidateDataStructure;
    pthread_mutex_lock(&g_ai_lock);
    *scene = aiImportFile(path, flags);
    if (!*scene) {
        const char *msg = aiGetErrorString();
        int unsupported = msg && (strstr(msg, "No suitable reader") || strstr(msg, "not supported"));
        rc = sushi_error(unsupported ? SUSHI_EUNSUPPORTED : SUSHI_EFORMAT, "%s: cannot import mesh: %s", path,
                         msg && *msg ? msg : "unknown error");
    }
    pthread_mutex_unlock(&g_ai_lock);
    return rc;
}

int media_mesh_load(const char *path, const struct media_mesh_opts *opts, struct media_points *out,
                    struct media_errors *errs)
{
    if (!path || !out) return sushi_error(SUSHI_EINVAL, "media_mesh_load: null argument");
    memset(out, 0, sizeof *out);
    struct media_mesh_opts o;
    if (opts) o = *opts;
    else media_mesh_defaults(&o);
    if (o.points < 1 || o.points > (1 << 24))
        return sushi_error(SUSHI_EINVAL, "%s: bad point count %d", path, o.points);
    const struct aiScene *sc = NULL;
    int rc = mesh_import(path, &sc);
    double *tri = NULL;
    size_t ntri = 0;
    if (!rc) rc = mesh_triangles(sc, path, &tri, &ntri);
    if (sc) aiReleaseImport(sc);
    float *pts = NULL;
    if (!rc && !(pts = malloc(sizeof(float) * 6 * (size_t)o.points)))
        rc = sushi_error(SUSHI_ENOMEM, "%s: out of memory", path);
    if (!rc) rc = mesh_sample(tri, ntri, path, &o, pts);
    free(tri);
    if (rc) {
        free(pts);
        return media_errors_add(errs, MEDIA_MESH, rc);
    }
    *out = (struct media_points){.n = o.points, .data = pts};
    return 0;
}
