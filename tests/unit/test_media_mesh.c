// libs: media core
/* Meshes: OBJ, PLY, STL and glTF (with a node transform) normalised into the unit
 * sphere (quads and other polygons split into fans); sampled points lie on the surface with unit normals pointing out of the
 * solid; the share of points per face follows face area (within 4 sigma) and points
 * are uniform inside a triangle (mean at the centroid); the glTF and STL copies of one
 * mesh give the same points; sampling is seeded; bad files refused and counted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>

#include "common/core/fsutil.h"
#include "common/core/log.h"
#include "common/media/media.h"
#include "test_media_fixtures.h"

enum { P = 8192 };

static void load(const char *name, uint64_t seed, struct media_points *pts)
{
    struct media_mesh_opts o;
    media_mesh_defaults(&o);
    o.points = P;
    o.seed = seed;
    int rc = media_mesh_load(mfx(name), &o, pts, NULL);
    if (rc) printf("%s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    assert_int_equal(pts->n, P);
    for (int i = 0; i < P; i++) {
        const float *p = pts->data + i * 6;
        assert_true(sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]) <= 1 + 1e-5);
        assert_float_equal(sqrt(p[3] * p[3] + p[4] * p[4] + p[5] * p[5]), 1.0, 1e-5);
    }
}

static void share_near(int count, double want)
{
    double got = (double)count / P, sigma = sqrt(want * (1 - want) / P);
    printf("  share %.4f, expected %.4f (sigma %.4f)\n", got, want, sigma);
    assert_true(fabs(got - want) <= 4 * sigma);
}

static void test_cube_obj(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct media_points pts;
    load("cube.obj", 1, &pts);
    /* cube of half-side 1 and radius sqrt(3): scaled, every face lies at distance 1/sqrt(3) */
    const double h = 1 / sqrt(3.0);
    int per_face[6] = {0};
    for (int i = 0; i < P; i++) {
        const float *p = pts.data + i * 6, *n = p + 3;
        int axis = fabsf(n[0]) > 0.5f ? 0 : fabsf(n[1]) > 0.5f ? 1 : 2;
        assert_float_equal(fabsf(n[axis]), 1.0, 1e-6);
        assert_float_equal(p[axis], n[axis] * h, 1e-5);   /* on the face the normal points out of */
        for (int d = 0; d < 3; d++) assert_true(fabs(p[d]) <= h + 1e-5);
        per_face[axis * 2 + (n[axis] > 0)]++;
    }
    for (int f = 0; f < 6; f++) share_near(per_face[f], 1.0 / 6);
    media_points_free(&pts);
}

/* the cube written with quads and a hexagon-fan top: polygons become triangle fans */
static void test_polygon_faces(void **state)
{
    (void)state;
    char dir[] = "/tmp/sushi-media-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/quads.obj", dir);
    const char obj[] = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\n"
                       "f 1 4 3 2\nf 5 6 7 8\nf 1 2 6 5\nf 2 3 7 6\nf 3 4 8 7\nf 4 1 5 8\n";
    assert_int_equal(fs_write_atomic(path, obj, sizeof obj - 1), 0);
    struct media_mesh_opts o = {.points = P, .seed = 5};
    struct media_points pts;
    int rc = media_mesh_load(path, &o, &pts, NULL);
    if (rc) printf("%s\n", sushi_last_error());
    assert_int_equal(rc, 0);
    const double h = 1 / sqrt(3.0);
    int per_face[6] = {0};
    for (int i = 0; i < P; i++) {
        const float *p = pts.data + i * 6, *n = p + 3;
        int axis = fabsf(n[0]) > 0.5f ? 0 : fabsf(n[1]) > 0.5f ? 1 : 2;
        assert_float_equal(p[axis], n[axis] * h, 1e-5);
        per_face[axis * 2 + (n[axis] > 0)]++;
    }
    for (int f = 0; f < 6; f++) share_near(per_face[f], 1.0 / 6);
    media_points_free(&pts);
    assert_int_equal(fs_remove_tree(dir), 0);
}

static void test_tetra_ply(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct media_points pts;
    load("tetra.ply", 2, &pts);
    /* three right-angle faces of area 2 on the planes x = 0, y = 0, z = 0 (normals -x,
     * -y, -z) and the slanted face of area 2 sqrt(3) (normal (1,1,1)/sqrt 3) */
    int faces[4] = {0};
    for (int i = 0; i < P; i++) {
        const float *n = pts.data + i * 6 + 3;
        if (n[0] > 0.5f && n[1] > 0.5f) {
            assert_float_equal(n[2], 1 / sqrt(3.0), 1e-5);
            faces[3]++;
        } else {
            int axis = n[0] < -0.5f ? 0 : n[1] < -0.5f ? 1 : 2;
            assert_float_equal(n[axis], -1.0, 1e-6);
            faces[axis]++;
        }
    }
    double total = 6 + 2 * sqrt(3.0);
    for (int f = 0; f < 3; f++) share_near(faces[f], 2 / total);
    share_near(faces[3], 2 * sqrt(3.0) / total);
    media_points_free(&pts);
}

static void test_stl_gltf_areas(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct media_points stl, gltf, other;
    load("two.stl", 3, &stl);
    load("two.gltf", 3, &gltf);
    /* triangles (0,0)(1,0)(0,2) and (3,0)(6,0)(3,2) in z = 0: bbox centre (3, 1), radius sqrt(10) */
    const double s = 1 / sqrt(10.0);
    int second = 0;
    double mean[2][2] = {{0}};
    for (int i = 0; i < P; i++) {
        const float *p = stl.data + i * 6;
        assert_float_equal(p[2], 0, 1e-6);
        assert_float_equal(p[5], 1, 1e-6);
        double x = p[0] / s + 3, y = p[1] / s + 1;   /* back to file coordinates */
        int k = x > 2;
        second += k;
        mean[k][0] += x;
        mean[k][1] += y;
        for (int d = 0; d < 6; d++) assert_float_equal(gltf.data[i * 6 + d], p[d], 1e-5);
    }
    share_near(second, 0.75);
    /* uniform in each triangle: the mean is the centroid (sd of x about 0.24 / 0.71) */
    assert_float_equal(mean[0][0] / (P - second), 1 / 3.0, 0.03);
    assert_float_equal(mean[0][1] / (P - second), 2 / 3.0, 0.03);
    assert_float_equal(mean[1][0] / second, 4.0, 0.05);
    assert_float_equal(mean[1][1] / second, 2 / 3.0, 0.03);
    load("two.stl", 3, &other);
    assert_memory_equal(other.data, stl.data, sizeof(float) * 6 * P);
    media_points_free(&other);
    load("two.stl", 4, &other);
    assert_memory_not_equal(other.data, stl.data, sizeof(float) * 6 * P);
    media_points_free(&other);
    media_points_free(&stl);
    media_points_free(&gltf);
}

static void test_bad_meshes(void **state)
{
    (void)state;
    MFX_REQUIRE();
    struct media_errors errs = {0};
    char dir[] = "/tmp/sushi-media-XXXXXX", path[160];
    assert_non_null(mkdtemp(dir));
    char *stl;
    size_t n;
    assert_int_equal(fs_read_all(mfx("two.stl"), &stl, &n), 0);
    struct {
        const char *name, *data;
        size_t len;
    } cases[] = {
        {"cut.stl", stl, 100},
        {"lines.obj", "v 0 0 0\nv 1 0 0\nl 1 2\n", 0},
        {"bad_index.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", 0},
        {"flat.obj", "v 0 0 0\nv 1 1 1\nv 2 2 2\nf 1 2 3\n", 0},
        {"text.xyz1", "hello, world\n", 0},
        {"empty.ply", "", 0},
        /* found by fuzzing: a .ply whose first line is not "ply" hung assimp's reader */
        {"late.ply", "\nply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
                     "property float z\nelement face 8\nproperty list uchar int vertex_indices\n"
                     "end_head0r0 e0\n \n2 0 0\n0 2 0\n0 0 2\n3 0 2  vertex 4) 0 3 0 3 2\n", 0},
        /* another reader's extension but PLY content: assimp falls back to its PLY reader */
        {"late.gltf", "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nprope", 0},
        /* no mesh extension, "ply" content: the PLY reader's strict header check applies */
        {"mesh.data", "ply\nformat ascii 1.0\nelement vertex banana\nend_header\n", 0},
    };
    int ncases = sizeof cases / sizeof *cases;
    for (int i = 0; i < ncases; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        assert_int_equal(fs_write_atomic(path, cases[i].data, cases[i].len ? cases[i].len : strlen(cases[i].data)), 0);
        struct media_points pts;
        int rc = media_mesh_load(path, NULL, &pts, &errs);
        printf("%s -> %d: %s\n", cases[i].name, rc, sushi_last_error());
        assert_true(rc < 0);
        assert_null(pts.data);
        assert_non_null(strstr(sushi_last_error(), path));
    }
    free(stl);
    struct media_points pts;
    snprintf(path, sizeof path, "%s/missing.obj", dir);
    assert_int_equal(media_mesh_load(path, NULL, &pts, &errs), SUSHI_ENOTFOUND);
    assert_int_equal(atomic_load(&errs.by_kind[MEDIA_MESH]), ncases + 1);
    assert_int_equal(fs_remove_tree(dir), 0);
}

static void *mesh_worker(void *arg)
{
    struct media_points pts;
    struct media_mesh_opts o = {.points = 1000, .seed = 9};
    int *rc = arg;
    for (int i = 0; i < 20 && !*rc; i++) {
        *rc = media_mesh_load(mfx(i % 2 ? "cube.obj" : "two.gltf"), &o, &pts, NULL);
        media_points_free(&pts);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    MFX_REQUIRE();
    pthread_t th[4];
    int rc[4] = {0};
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, mesh_worker, &rc[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) assert_int_equal(rc[i], 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    mfx_setup(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cube_obj),
        cmocka_unit_test(test_polygon_faces),
        cmocka_unit_test(test_tetra_ply),
        cmocka_unit_test(test_stl_gltf_areas),
        cmocka_unit_test(test_bad_meshes),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
