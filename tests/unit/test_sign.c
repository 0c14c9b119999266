/* Reproduces every vector made by the official Huawei Cloud SDK signer,
 * and checks that changing any input changes the signature. */
#include "sign.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static char *sign_vector(json_t *v, const char *override_body)
{
    json_t *q = json_object_get(v, "query"), *h = json_object_get(v, "headers");
    struct sign_param query[16], headers[16];
    size_t nq = 0, nh = 0;
    const char *k;
    json_t *val;
    json_object_foreach(q, k, val) { query[nq++] = (struct sign_param){ k, json_string_value(val) }; }
    json_object_foreach(h, k, val) { headers[nh++] = (struct sign_param){ k, json_string_value(val) }; }
    const char *body = override_body ? override_body : json_string_value(json_object_get(v, "body"));
    return sign_authorization(json_string_value(json_object_get(v, "ak")),
                              json_string_value(json_object_get(v, "sk")),
                              json_string_value(json_object_get(v, "method")),
                              json_string_value(json_object_get(v, "path")), query, nq, headers,
                              nh, body, strlen(body));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTORS.json\n", argv[0]);
        return 2;
    }
    json_error_t err;
    json_t *vectors = json_load_file(argv[1], 0, &err);
    if (!json_is_array(vectors) || json_array_size(vectors) == 0) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], err.text);
        return 2;
    }
    size_t i;
    json_t *v;
    json_array_foreach(vectors, i, v) {
        const char *want = json_string_value(json_object_get(v, "authorization"));
        char *got = sign_vector(v, NULL);
        if (!got || strcmp(got, want) != 0) {
            fprintf(stderr, "vector %zu: want %s\n            got  %s\n", i, want,
                    got ? got : "(null)");
            failures++;
        }
        char *tampered = sign_vector(v, "{}x");
        if (!tampered || strcmp(tampered, want) == 0) {
            fprintf(stderr, "vector %zu: a changed body kept the signature\n", i);
            failures++;
        }
        free(got);
        free(tampered);
    }
    char date[17];
    sign_format_date(1795342500, date); /* 2026-11-22T10:15:00Z */
    if (strcmp(date, "20261122T101500Z") != 0) {
        fprintf(stderr, "sign_format_date: got %s\n", date);
        failures++;
    }
    char *enc = sign_uri_encode("a b/ü~");
    if (!enc || strcmp(enc, "a%20b%2F%C3%BC~") != 0) {
        fprintf(stderr, "sign_uri_encode: got %s\n", enc ? enc : "(null)");
        failures++;
    }
    free(enc);
    printf("%zu vectors, %d failures\n", json_array_size(vectors), failures);
    json_decref(vectors);
    return failures ? 1 : 0;
}
