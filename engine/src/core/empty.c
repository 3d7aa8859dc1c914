/* Keeps every engine library non-empty while its folder is being filled. */
typedef int qn_empty_translation_unit;
