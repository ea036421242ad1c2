/* sushi-teacher's commands and their shared argument parsing. */
#ifndef SUSHI_TEACHER_H
#define SUSHI_TEACHER_H

/* sushi-teacher score ... / generate ...: argv[0] is the command name; 0 on success,
 * 1 on a runtime failure, 2 on a usage error */
int teacher_score(int argc, char **argv);
int teacher_generate(int argc, char **argv);

/* option values with a message naming the option; 0 or -1 */
int teacher_parse_int(const char *opt, const char *s, long lo, long hi, int *out);
int teacher_parse_float(const char *opt, const char *s, float *out);

#endif
