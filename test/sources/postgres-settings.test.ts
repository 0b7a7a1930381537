// How a restore writes a database's and a role's settings back (ALTER DATABASE / ROLE ... SET): list
// settings such as search_path are split the way PostgreSQL's SplitGUCList reads pg_db_role_setting and
// quoted one name at a time, as pg_dump does; a real server round-trips them in
// test/agent/restore-anywhere.test.ts.

import { describe, expect, it } from 'vitest';
import { BackupdError } from '../../src/errors.js';
import { settingSql, splitSettingList } from '../../src/sources/postgres-restore.js';

describe('settings of a restored database', () => {
  it('splits list settings as PostgreSQL stores them', () => {
    expect(splitSettingList('"$user", public, "Sales Data"')).toEqual(['$user', 'public', 'Sales Data']);
    expect(splitSettingList('a,b')).toEqual(['a', 'b']);
    expect(splitSettingList('"with ""quote"""')).toEqual(['with "quote"']);
    expect(splitSettingList('')).toEqual([]);
    expect(splitSettingList('  ')).toEqual([]);
  });

  it('quotes each name of a list setting, and a plain setting as one literal', () => {
    expect(settingSql('search_path="$user", public, "Sales Data"')).toBe(
      `SET "search_path" TO '$user', 'public', 'Sales Data'`,
    );
    expect(settingSql('search_path=""')).toBe(`SET "search_path" TO ''`);
    expect(settingSql('work_mem=12MB')).toBe(`SET "work_mem" TO '12MB'`);
    expect(settingSql("app.greeting=it's = fine")).toBe(`SET "app.greeting" TO 'it''s = fine'`);
  });

  it('refuses an entry without a name', () => {
    expect(() => settingSql('=x')).toThrow(BackupdError);
  });
});
